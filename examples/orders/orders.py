"""Orders: an HTTP API that reserves stock in the inventory service before confirming an order.

    POST /orders {"sku": "...", "qty": n}   201 {"order_id", "status": "confirmed"} | 409 | 503
    GET  /orders/<id>                        200 | 404
    GET  /health                             200

A reservation that times out is retried once with the same request id (the inventory answers a
retried id with its first answer). Environment: ORDERS_PORT (default 8301), INVENTORY_ADDR
(host:port, default 127.0.0.1:9301), INVENTORY_TIMEOUT (seconds for the first attempt, default 1;
the retry waits five times as long), FAULTBOX_BUG (plant a bug): "ack-unpersisted" confirms an
order whose reservation failed to reach the disk; "double-confirm" announces an order confirmed
when the first attempt times out, and again when the retry succeeds.
"""

import itertools
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("ORDERS_PORT", "8301"))
INVENTORY = os.environ.get("INVENTORY_ADDR", "127.0.0.1:9301")
TIMEOUT = float(os.environ.get("INVENTORY_TIMEOUT", "1"))
BUG = os.environ.get("FAULTBOX_BUG", "")
orders: dict[str, dict] = {}
ids = itertools.count(1)
lock = threading.Lock()


def log(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def inventory(command: str, timeout: float) -> str:
    host, port = INVENTORY.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(command.encode() + b"\n")
        return sock.makefile().readline().strip()


def reserve(order_id: str, sku: str, qty: int) -> str:
    command = f"RESERVE {sku} {qty} {order_id}"
    try:
        return inventory(command, TIMEOUT)
    except TimeoutError:
        if BUG == "double-confirm":  # BUG: optimistic announcement before the outcome is known
            log(order_id=order_id, status="confirmed", persisted="true", attempt=1)
        log(order_id=order_id, event="retry", reason="inventory timeout")
        return inventory(command, TIMEOUT * 5)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):  # keep stdout for structured logs
        pass

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, {"status": "ok"})
        if self.path.startswith("/orders/"):
            order = orders.get(self.path.rsplit("/", 1)[1])
            return self.reply(200, order) if order else self.reply(404, {"error": "not found"})
        return self.reply(404, {"error": "not found"})

    def do_POST(self):
        if self.path != "/orders":
            return self.reply(404, {"error": "not found"})
        try:
            req = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            sku, qty = str(req["sku"]), int(req.get("qty", 1))
        except (ValueError, KeyError):
            return self.reply(400, {"error": "body must be {\"sku\": ..., \"qty\": n}"})
        with lock:
            order_id = f"ord-{next(ids)}"
        try:
            answer = reserve(order_id, sku, qty)
        except OSError as exc:
            log(order_id=order_id, status="failed", persisted="false", error=f"inventory: {exc.strerror or exc}")
            return self.reply(503, {"error": "inventory unavailable", "order_id": order_id})
        persisted = "true"
        if answer.startswith("ERR wal") and BUG == "ack-unpersisted":
            persisted = "false"  # BUG: the reservation never reached the disk, but we confirm anyway
        elif not answer.startswith("OK"):
            status = 409 if "insufficient" in answer else 503
            log(order_id=order_id, status="rejected", persisted="false", error=answer)
            return self.reply(status, {"error": answer, "order_id": order_id})
        order = {"order_id": order_id, "sku": sku, "qty": qty, "status": "confirmed"}
        orders[order_id] = order
        stock = int(answer.split()[1]) if answer.startswith("OK") else None
        log(order_id=order_id, status="confirmed", persisted=persisted, stock=stock)
        return self.reply(201, order)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    log(event="listening", port=PORT, inventory=INVENTORY, bug=BUG or None)
    server.serve_forever()
