"""Inventory: a TCP line service that keeps stock in memory and every change in a write-ahead file.

    PING                 -> PONG
    STOCK <sku>          -> STOCK <n>
    RESERVE <sku> <qty>  -> OK <remaining> | ERR <reason>

A reservation is appended to the WAL and fsync'ed before it is applied and acknowledged, so a
failed write or fsync leaves the stock unchanged. Every decision is logged as a JSON line.
Environment: INVENTORY_PORT (default 9301), INVENTORY_WAL (default ./inventory.wal),
INVENTORY_STOCK (initial stock per sku, default 10).
"""

import json
import os
import socketserver
import sys
import threading

PORT = int(os.environ.get("INVENTORY_PORT", "9301"))
WAL = os.environ.get("INVENTORY_WAL", os.path.join(os.getcwd(), "inventory.wal"))
INITIAL = int(os.environ.get("INVENTORY_STOCK", "10"))

stock: dict[str, int] = {}
lock = threading.Lock()


def log(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def reserve(sku: str, qty: int) -> str:
    with lock:
        current = stock.get(sku, INITIAL)
        if qty <= 0 or qty > current:
            log(event="reserve", sku=sku, qty=qty, stock=current, result="rejected")
            return f"ERR insufficient stock ({current} left)"
        record = json.dumps({"sku": sku, "qty": qty}) + "\n"
        try:
            fd = os.open(WAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, record.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log(event="reserve", sku=sku, qty=qty, stock=current, result="error", persisted=False, error=exc.strerror)
            return f"ERR wal: {exc.strerror}"
        stock[sku] = current - qty
        log(event="reserve", sku=sku, qty=qty, stock=stock[sku], result="ok", persisted=True)
        return f"OK {stock[sku]}"


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for raw in self.rfile:
            parts = raw.decode().split()
            if not parts:
                continue
            cmd = parts[0].upper()
            if cmd == "PING":
                reply = "PONG"
            elif cmd == "STOCK" and len(parts) == 2:
                with lock:
                    reply = f"STOCK {stock.get(parts[1], INITIAL)}"
            elif cmd == "RESERVE" and len(parts) == 3 and parts[2].lstrip("-").isdigit():
                reply = reserve(parts[1], int(parts[2]))
            else:
                reply = "ERR unknown command"
            self.wfile.write(reply.encode() + b"\n")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    with Server(("127.0.0.1", PORT), Handler) as server:
        log(event="listening", port=PORT, wal=WAL)
        server.serve_forever()
