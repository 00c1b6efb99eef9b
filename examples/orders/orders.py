"""Orders: an HTTP API that reserves stock in the inventory service before confirming an order.

    POST /orders {"sku": "...", "qty": n}   201 {"order_id", "status": "confirmed"} | 409 | 503
    GET  /orders/<id>                        200 | 404
    GET  /health                             200

Environment: ORDERS_PORT (default 8301), INVENTORY_ADDR (host:port, default 127.0.0.1:9301).
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
orders: dict[str, dict] = {}
ids = itertools.count(1)
lock = threading.Lock()


def log(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def inventory(command: str) -> str:
    host, port = INVENTORY.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(command.encode() + b"\n")
        reply = sock.makefile().readline().strip()
    return reply


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
            answer = inventory(f"RESERVE {sku} {qty}")
        except OSError as exc:
            log(order_id=order_id, status="failed", persisted="false", error=f"inventory: {exc.strerror or exc}")
            return self.reply(503, {"error": "inventory unavailable", "order_id": order_id})
        if not answer.startswith("OK"):
            status = 409 if "insufficient" in answer else 503
            log(order_id=order_id, status="rejected", persisted="false", error=answer)
            return self.reply(status, {"error": answer, "order_id": order_id})
        order = {"order_id": order_id, "sku": sku, "qty": qty, "status": "confirmed"}
        orders[order_id] = order
        log(order_id=order_id, status="confirmed", persisted="true", stock=int(answer.split()[1]))
        return self.reply(201, order)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    log(event="listening", port=PORT, inventory=INVENTORY)
    server.serve_forever()
