"""Inventory: a TCP line service that keeps stock in memory and every change in a write-ahead file.

    PING                              -> PONG
    STOCK <sku>                       -> STOCK <n>
    RESERVE <sku> <qty> [request-id]  -> OK <remaining> | ERR <reason>

A reservation is appended to the WAL and fsync'ed before it is applied and acknowledged, so a
failed write or fsync leaves the stock unchanged; a retried request id gets the first answer again.
Every decision is logged as a JSON line.

Environment: INVENTORY_PORT (default 9301), INVENTORY_WAL (default ./inventory.wal),
INVENTORY_STOCK (initial stock per sku, default 10), FAULTBOX_BUG (plant a bug, for the planted-bug
suite): "racy-reserve" checks the stock outside the lock and applies retries again;
"ack-before-fsync" acknowledges a reservation before its WAL record is fsync'ed.
"""

import json
import os
import socketserver
import sys
import threading

PORT = int(os.environ.get("INVENTORY_PORT", "9301"))
WAL = os.environ.get("INVENTORY_WAL", os.path.join(os.getcwd(), "inventory.wal"))
INITIAL = int(os.environ.get("INVENTORY_STOCK", "10"))
BUG = os.environ.get("FAULTBOX_BUG", "")

stock: dict[str, int] = {}
answered: dict[str, str] = {}  # request id -> the reply it got
lock = threading.Lock()


def log(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def append_wal(record: str, sync: bool) -> int:
    fd = os.open(WAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, record.encode())
    if sync:
        os.fsync(fd)
    return fd


def reserve(sku: str, qty: int, rid: str):
    """(reply, work to do after replying or None)."""
    if BUG == "racy-reserve":
        checked = stock.get(sku, INITIAL)  # BUG: read outside the lock, used after waiting for it
        if qty <= 0 or qty > checked:
            log(event="reserve", request=rid, sku=sku, qty=qty, stock=checked, result="rejected")
            return f"ERR insufficient stock ({checked} left)", None
    with lock:
        if rid and rid in answered and BUG != "racy-reserve":
            return answered[rid], None
        current = stock.get(sku, INITIAL)
        if BUG != "racy-reserve" and (qty <= 0 or qty > current):
            log(event="reserve", request=rid, sku=sku, qty=qty, stock=current, result="rejected")
            return f"ERR insufficient stock ({current} left)", None
        record = json.dumps({"sku": sku, "qty": qty, "request": rid}) + "\n"
        early_ack = BUG == "ack-before-fsync"
        try:
            fd = append_wal(record, sync=not early_ack)
        except OSError as exc:
            log(event="reserve", request=rid, sku=sku, qty=qty, stock=current, result="error",
                persisted=False, error=exc.strerror)
            return f"ERR wal: {exc.strerror}", None
        stock[sku] = current - qty
        reply = f"OK {stock[sku]}"
        if rid:
            answered[rid] = reply
        if not early_ack:
            os.close(fd)
            log(event="reserve", request=rid, sku=sku, qty=qty, stock=stock[sku], result="ok", persisted=True)
            return reply, None

        def sync_later():  # BUG: the caller already heard "OK"
            try:
                os.fsync(fd)
                persisted = True
            except OSError:
                persisted = False
            finally:
                os.close(fd)
            log(event="reserve", request=rid, sku=sku, qty=qty, stock=stock[sku], result="ok", persisted=persisted)

        return reply, sync_later


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for raw in self.rfile:
            parts = raw.decode().split()
            if not parts:
                continue
            cmd, after = parts[0].upper(), None
            if cmd == "PING":
                reply = "PONG"
            elif cmd == "STOCK" and len(parts) == 2:
                with lock:
                    reply = f"STOCK {stock.get(parts[1], INITIAL)}"
            elif cmd == "RESERVE" and len(parts) in (3, 4) and parts[2].lstrip("-").isdigit():
                reply, after = reserve(parts[1], int(parts[2]), parts[3] if len(parts) == 4 else "")
            else:
                reply = "ERR unknown command"
            try:
                self.wfile.write(reply.encode() + b"\n")
            except OSError:
                pass  # the caller gave up waiting
            if after is not None:
                after()


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    with Server(("127.0.0.1", PORT), Handler) as server:
        log(event="listening", port=PORT, wal=WAL, bug=BUG or None)
        server.serve_forever()
