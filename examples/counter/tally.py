"""Tally: an HTTP front end that counts likes in the store service.

    POST /like     200 {"likes": n}   (reads the counter, adds one, writes it back)
    GET  /likes    200 {"likes": n}
    GET  /health   200

The planted bug: the read and the write are two separate commands with nothing in between that
stops another front end from writing first (no lock, no compare-and-set). Two front ends that
both read before either writes lose one like. Run alone, or with one front end clearly ahead of
the other, it counts right.

Environment: TALLY_PORT (default 8401), STORE_ADDR (host:port, default 127.0.0.1:9401),
TALLY_CHECK_MS (milliseconds spent checking a request before it is counted, default 0: the mobile
front end verifies a signature first).
"""

import json
import os
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("TALLY_PORT", "8401"))
STORE = os.environ.get("STORE_ADDR", "127.0.0.1:9401")
CHECK = float(os.environ.get("TALLY_CHECK_MS", "0")) / 1000.0
KEY = "likes"


def log(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def store(sock_file, command: str) -> str:
    sock, rfile = sock_file
    sock.sendall(command.encode() + b"\n")
    return rfile.readline().decode().strip()


def connect():
    host, port = STORE.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock, sock.makefile("rb")


def like() -> int:
    sock, rfile = connect()
    try:
        current = int(store((sock, rfile), f"GET {KEY}").split()[1])
        updated = current + 1  # BUG: read-modify-write in two commands, nothing stops a lost update
        store((sock, rfile), f"SET {KEY} {updated}")
    finally:
        rfile.close()
        sock.close()
    log(event="liked", read=current, wrote=updated)
    return updated


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path != "/like":
            self._reply(404, {"error": "not found"})
            return
        if CHECK:
            time.sleep(CHECK)  # the request's signature check
        self._reply(200, {"likes": like()})

    def do_GET(self):
        if self.path == "/health":
            self._reply(200, {"ok": True})
        elif self.path == "/likes":
            sock, rfile = connect()
            try:
                value = int(store((sock, rfile), f"GET {KEY}").split()[1])
            finally:
                rfile.close()
                sock.close()
            self._reply(200, {"likes": value})
        else:
            self._reply(404, {"error": "not found"})

    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    log(event="listening", port=PORT)
    server.serve_forever()
