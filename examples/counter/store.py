"""Store: a TCP line service that keeps integer counters in memory.

    GET <key>          -> VALUE <n>     (0 for a key never set)
    SET <key> <n>      -> OK

Each connection is served by a thread of its own; every command is logged as a JSON line.
Environment: STORE_PORT (default 9401).
"""

import json
import os
import socketserver
import sys
import threading

PORT = int(os.environ.get("STORE_PORT", "9401"))
values: dict[str, int] = {}
lock = threading.Lock()


def log(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for raw in self.rfile:
            parts = raw.decode().split()
            if len(parts) == 2 and parts[0] == "GET":
                with lock:
                    value = values.get(parts[1], 0)
                log(op="get", key=parts[1], value=value)
                reply = f"VALUE {value}"
            elif len(parts) == 3 and parts[0] == "SET" and parts[2].lstrip("-").isdigit():
                with lock:
                    values[parts[1]] = int(parts[2])
                log(op="set", key=parts[1], value=int(parts[2]))
                reply = "OK"
            else:
                reply = "ERR bad command"
            self.wfile.write(reply.encode() + b"\n")
            self.wfile.flush()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    with Server(("127.0.0.1", PORT), Handler) as server:
        log(event="listening", port=PORT)
        server.serve_forever()
