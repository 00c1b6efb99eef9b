"""The shop's order API: HTTP over PostgreSQL (orders), Redis (order cache) and Kafka (order-events).

    POST /orders  {"sku": "...", "qty": n}          201 {"order_id", "status": "confirmed"} | 400 | 503
    POST /import  {"orders": [{"sku", "qty"}, ...]} 201 {"order_ids": [...], "status": "confirmed"} | 503
    GET  /orders/<id>                               200 the order (read-through cache) | 404 | 503
    GET  /health                                    200 (touches no dependency)

Creating an order (the correct flow):
  0. charge it at the payment provider (PAYMENTS_URL): POST /v1/charges {order_id, amount, currency}
     with the order id as Idempotency-Key, 1 s per attempt, up to 3 attempts on a timeout or a
     5xx. A provider that honours the key charges once however often it is asked. A declined charge
     (4xx) -> 402; no answer -> 503; nothing else is written either way. (A charge whose order
     fails later is left to the provider's refunds; this shop does not model them.)
  1. a new order id; SET order:<id> in Redis to a pending JSON. Redis fails -> 503, nothing else written.
  2. a NEW PostgreSQL connection for this request (connect_timeout=2), BEGIN, INSERT the order with
     status 'confirmed', COMMIT. A serialization failure or a deadlock (SQLSTATE 40001, 40P01) is
     transient: the transaction is retried, up to 3 attempts. Any other failure -> DEL order:<id>
     and 503.
  3. publish {order_id, sku, qty} to the topic order-events (one producer made at startup), wait
     for its delivery report, then flush whatever else the producer holds (a retry still in
     flight). A failed publish is logged; the order exists, so the answer is still 201.
  4. SET order:<id> to the confirmed JSON.
  5. log {"event": "order", "order_id", "status": "confirmed", "persisted": "true", "sku", "qty"}
     and answer 201.
A failure logs status "failed" (a dependency failed) or "rejected" (a bad request) with persisted
"false". Every log line is one JSON object on stdout, flushed at once.

The Redis client and the Kafka producer are connected at startup and kept; only PostgreSQL gets a
fresh connection per request (a pooled connection would make a "connect" fault inert).

Environment: SHOP_PORT, DATABASE_URL, REDIS_URL, KAFKA_BOOTSTRAP, SHOP_TOPIC (default order-events),
SHOP_BUG (plant one bug, see README.md):
  confirm-before-commit  the order is confirmed before the database has it; a failed write still
                         answers 201 and logs status "confirmed" with persisted "false"
  duplicate-event        a publish whose delivery report is late is sent again (no idempotence)
  event-before-commit    the event is published before the order's INSERT and COMMIT
  stale-cache            a failed database write leaves the pending order:<id> in Redis
  no-retry               a serialization failure or deadlock is answered 503 instead of retried
  cache-miss-404         GET /orders/<id> answers 404 when the cache has no entry, without asking
                         the database
  charge-without-key     charges are sent without an Idempotency-Key: a retry after a timeout is a
                         second charge
"""

import http.client
import itertools
import json
import os
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import redis
from confluent_kafka import KafkaException, Producer
from redis.backoff import NoBackoff
from redis.retry import Retry

PORT = int(os.environ.get("SHOP_PORT", "8080"))
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
KAFKA_BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
TOPIC = os.environ.get("SHOP_TOPIC", "order-events")
PAYMENTS_URL = os.environ.get("PAYMENTS_URL", "")  # no payment step when empty
PAYMENT_TIMEOUT = 1.0  # seconds per charge attempt
PAYMENT_ATTEMPTS = 3
PRICE_CENTS = 1250  # every item costs the same in this shop
BUG = os.environ.get("SHOP_BUG", "")
PUBLISH_TIMEOUT = 8.0  # seconds to wait for the broker's delivery report
IMPATIENT_TIMEOUT = 0.3  # duplicate-event: how long the buggy api waits before publishing again
ATTEMPTS = 3  # transactions that fail with a transient error (40001, 40P01) are tried this often
TRANSIENT = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)

_log_lock = threading.Lock()
_ids = itertools.count(1)


def log(**fields):
    line = json.dumps(fields, separators=(",", ":"))
    with _log_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def new_order_id():
    return f"ord-{next(_ids)}-{uuid.uuid4().hex[:8]}"


# -- dependencies ------------------------------------------------------------------------------

cache = redis.Redis.from_url(
    REDIS_URL,
    socket_timeout=2,
    socket_connect_timeout=2,
    retry=Retry(NoBackoff(), 0),  # a failed command fails the request: never applied twice
    decode_responses=True,
)

# Ready to publish means connected to the broker that leads the topic's partition (the one
# metadata names), not only to the bootstrap address: otherwise the first order opens that
# connection, and under a slow broker its handshake eats the order's publish timeout. librdkafka
# tells a connection's state only in its statistics; they are read until that connection is UP.
leader_connected = threading.Event()


def _stats(text):
    if leader_connected.is_set():
        return
    brokers = json.loads(text).get("brokers", {}).values()
    if any(b.get("nodeid", -1) >= 0 and b.get("state") == "UP" for b in brokers):
        leader_connected.set()


producer = Producer(
    {
        "bootstrap.servers": KAFKA_BOOTSTRAP,
        "acks": "all",
        "enable.idempotence": False,
        "linger.ms": 0,
        "message.timeout.ms": 30000,
        "socket.keepalive.enable": True,
        "enable.sparse.connections": False,  # connect to the brokers metadata names at once
        "statistics.interval.ms": 100,
        "stats_cb": _stats,
    }
)


def db_connect():
    """A fresh connection for this request (no pool: see the module docstring)."""
    return psycopg.connect(DATABASE_URL, connect_timeout=2, autocommit=False)


def short(exc):
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


class PublishResult:
    def __init__(self):
        self.done = threading.Event()
        self.error = None
        self.offset = None


def _send(order):
    result = PublishResult()

    def report(err, msg):
        if err is not None:
            result.error = str(err)
        else:
            result.offset = msg.offset()
        result.done.set()

    value = json.dumps({"order_id": order["order_id"], "sku": order["sku"], "qty": order["qty"]})
    producer.produce(TOPIC, key=order["order_id"], value=value, on_delivery=report)
    return result


def _wait(result, timeout):
    deadline = time.monotonic() + timeout
    while not result.done.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        producer.flush(min(remaining, 0.1))  # serves the delivery callbacks
    return True


def publish(order):
    """Publish one order event; returns an error text or None."""
    try:
        result = _send(order)
        if BUG == "duplicate-event" and not _wait(result, IMPATIENT_TIMEOUT):
            # BUG: a late delivery report is taken for a lost message and the event is sent again,
            # without idempotence: the broker may well have the first one already.
            log(event="publish_retry", order_id=order["order_id"], waited_ms=int(IMPATIENT_TIMEOUT * 1000))
            result = _send(order)
        if not _wait(result, PUBLISH_TIMEOUT):
            return f"no delivery report within {PUBLISH_TIMEOUT:g}s"
        # Nothing of this request stays in flight after the answer: whatever the producer still
        # holds (a retry of an earlier send) is delivered or failed before the client hears back.
        producer.flush(PUBLISH_TIMEOUT)
        return result.error
    except (KafkaException, BufferError) as exc:
        return short(exc)


def charge(order_id, qty):
    """Charge an order; returns (status, charge id or None, error text or None). The same
    Idempotency-Key on every attempt makes a retry safe: the provider answers a repeated key with
    the first charge instead of a second one."""
    url = urllib.parse.urlsplit(PAYMENTS_URL)
    body = json.dumps({"order_id": order_id, "amount": qty * PRICE_CENTS, "currency": "eur"})
    headers = {"content-type": "application/json"}
    if BUG != "charge-without-key":  # (charge-without-key: BUG, every attempt is a new charge)
        headers["idempotency-key"] = order_id
    error = None
    for attempt in range(1, PAYMENT_ATTEMPTS + 1):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=PAYMENT_TIMEOUT)
        try:
            conn.request("POST", "/v1/charges", body, headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            error = f"payments: {short(exc) or type(exc).__name__}"
            log(event="charge_retry", order_id=order_id, attempt=attempt, error=error)
            continue
        finally:
            conn.close()
        if resp.status in (200, 201):
            return resp.status, json.loads(data)["id"], None
        if resp.status < 500:
            return 402, None, f"payments: declined with {resp.status}"
        error = f"payments: status {resp.status}"
        log(event="charge_retry", order_id=order_id, attempt=attempt, error=error)
    return 503, None, error


def order_json(order):
    return json.dumps(order, separators=(",", ":"))


# -- flows -------------------------------------------------------------------------------------


class Failed(Exception):
    def __init__(self, status, reason, dependency):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.dependency = dependency


def create_order(sku, qty):
    """The order flow; returns (http status, body)."""
    order_id = new_order_id()
    order = {"order_id": order_id, "sku": sku, "qty": qty, "status": "pending"}
    key = f"order:{order_id}"

    # 0. charge it
    if PAYMENTS_URL:
        status, charge_id, error = charge(order_id, qty)
        if charge_id is None:
            log(event="order", order_id=order_id, sku=sku, qty=qty, status="failed", persisted="false",
                error=error)
            return status, {"error": "payment failed", "order_id": order_id}
        order["charge_id"] = charge_id

    # 1. cache the pending order
    try:
        cache.set(key, order_json(order))
    except redis.RedisError as exc:
        log(event="order", order_id=order_id, sku=sku, qty=qty, status="failed", persisted="false",
            error=f"redis: {short(exc)}")
        return 503, {"error": "cache unavailable", "order_id": order_id}

    # 2. persist it: a new connection, one transaction
    try:
        conn = db_connect()
    except psycopg.Error as exc:
        forget(key)
        log(event="order", order_id=order_id, sku=sku, qty=qty, status="failed", persisted="false",
            error=f"postgres connect: {short(exc)}")
        return 503, {"error": "database unavailable", "order_id": order_id}
    order["status"] = "confirmed"
    published = None
    try:
        if BUG == "event-before-commit":
            # BUG: the event goes out before the order is in the database.
            published = publish(order)
        persisted = "false"
        error = None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO orders (order_id, sku, qty, status) VALUES (%s, %s, %s, 'confirmed')",
                        (order_id, sku, qty),
                    )
                conn.commit()
                persisted = "true"
                error = None
                break
            except TRANSIENT as exc:
                error = short(exc)
                conn.rollback()
                if BUG == "no-retry" or attempt == ATTEMPTS:
                    break  # (no-retry: BUG, a transient error is taken for a final one)
                log(event="retry", order_id=order_id, attempt=attempt, sqlstate=exc.sqlstate)
            except psycopg.Error as exc:
                error = short(exc)
                break
        if error is not None:
            if BUG != "stale-cache":
                forget(key)
            # (stale-cache: BUG, the pending order stays in the cache although it was never stored)
            if BUG == "confirm-before-commit":
                # BUG: the confirmation was decided before COMMIT; the failed write does not undo it.
                log(event="order", order_id=order_id, sku=sku, qty=qty, status="confirmed",
                    persisted=persisted, error=f"postgres: {error}")
                return 201, {"order_id": order_id, "status": "confirmed"}
            log(event="order", order_id=order_id, sku=sku, qty=qty, status="failed", persisted="false",
                error=f"postgres: {error}")
            return 503, {"error": "could not store the order", "order_id": order_id}
    finally:
        conn.close()

    # 3. announce it (after the commit)
    if BUG != "event-before-commit":
        published = publish(order)
    if published is not None:
        log(event="publish_failed", order_id=order_id, error=published)

    # 4. cache the confirmed order
    try:
        cache.set(key, order_json(order))
    except redis.RedisError as exc:
        forget(key)
        log(event="cache_failed", order_id=order_id, error=short(exc))

    # 5. confirm
    log(event="order", order_id=order_id, sku=sku, qty=qty, status="confirmed", persisted="true",
        published="true" if published is None else "false")
    return 201, {"order_id": order_id, "status": "confirmed"}


def forget(key):
    try:
        cache.delete(key)
    except redis.RedisError as exc:
        log(event="cache_failed", key=key, error=short(exc))


def import_orders(items):
    """Bulk import: every order in one transaction, then one event per order."""
    orders = [{"order_id": new_order_id(), "sku": sku, "qty": qty, "status": "confirmed"} for sku, qty in items]
    try:
        conn = db_connect()
    except psycopg.Error as exc:
        for o in orders:
            log(event="import", order_id=o["order_id"], sku=o["sku"], qty=o["qty"], status="failed",
                persisted="false", error=f"postgres connect: {short(exc)}")
        return 503, {"error": "database unavailable"}
    published = {}
    try:
        if BUG == "event-before-commit":
            for o in orders:  # BUG: events before the rows are committed
                published[o["order_id"]] = publish(o)
        error = None
        try:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO orders (order_id, sku, qty, status) VALUES (%s, %s, %s, 'confirmed')",
                    [(o["order_id"], o["sku"], o["qty"]) for o in orders],
                )
            conn.commit()
        except psycopg.Error as exc:
            error = short(exc)
        if error is not None:
            confirmed = BUG == "confirm-before-commit"  # BUG: confirmed whatever COMMIT said
            for o in orders:
                log(event="import", order_id=o["order_id"], sku=o["sku"], qty=o["qty"],
                    status="confirmed" if confirmed else "failed", persisted="false",
                    error=f"postgres: {error}")
            if confirmed:
                return 201, {"order_ids": [o["order_id"] for o in orders], "status": "confirmed"}
            return 503, {"error": "could not store the orders"}
    finally:
        conn.close()
    for o in orders:
        if BUG != "event-before-commit":
            published[o["order_id"]] = publish(o)
        if published[o["order_id"]] is not None:
            log(event="publish_failed", order_id=o["order_id"], error=published[o["order_id"]])
        try:
            cache.set(f"order:{o['order_id']}", order_json(o))
        except redis.RedisError as exc:
            log(event="cache_failed", order_id=o["order_id"], error=short(exc))
        log(event="import", order_id=o["order_id"], sku=o["sku"], qty=o["qty"], status="confirmed",
            persisted="true", published="true" if published[o["order_id"]] is None else "false")
    return 201, {"order_ids": [o["order_id"] for o in orders], "status": "confirmed"}


def get_order(order_id):
    key = f"order:{order_id}"
    try:
        cached = cache.get(key)
    except redis.RedisError as exc:
        cached = None
        log(event="cache_failed", order_id=order_id, error=short(exc))
    if cached is not None:
        return 200, json.loads(cached)
    if BUG == "cache-miss-404":
        # BUG: the cache is taken for the source of truth; a miss is answered as "no such order".
        return 404, {"error": "not found", "order_id": order_id}
    try:
        with db_connect() as conn:
            row = conn.execute(
                "SELECT order_id, sku, qty, status FROM orders WHERE order_id = %s", (order_id,)
            ).fetchone()
    except psycopg.Error as exc:
        log(event="lookup", order_id=order_id, status="failed", error=f"postgres: {short(exc)}")
        return 503, {"error": "database unavailable"}
    if row is None:
        return 404, {"error": "not found", "order_id": order_id}
    order = {"order_id": row[0], "sku": row[1], "qty": row[2], "status": row[3]}
    try:
        cache.set(key, order_json(order))
    except redis.RedisError:
        pass
    return 200, order


# -- HTTP --------------------------------------------------------------------------------------


def parse_item(item):
    if not isinstance(item, dict):
        raise ValueError("an order is an object {\"sku\": ..., \"qty\": n}")
    sku, qty = item.get("sku"), item.get("qty", 1)
    if not isinstance(sku, str) or not sku or not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
        raise ValueError("sku must be a non-empty string and qty a positive integer")
    return sku, qty


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # stdout carries only the structured lines
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def body(self):
        length = int(self.headers.get("content-length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self):
        if self.path == "/health":
            return self.reply(200, {"status": "ok"})
        if self.path.startswith("/orders/"):
            return self.reply(*get_order(self.path[len("/orders/"):]))
        return self.reply(404, {"error": "not found"})

    def do_POST(self):
        try:
            req = self.body()
        except ValueError:
            log(event="request", path=self.path, status="rejected", persisted="false", error="invalid JSON")
            return self.reply(400, {"error": "the body must be JSON"})
        try:
            if self.path == "/orders":
                sku, qty = parse_item(req)
                return self.reply(*create_order(sku, qty))
            if self.path == "/import":
                items = req.get("orders") if isinstance(req, dict) else None
                if not isinstance(items, list) or not items:
                    raise ValueError("the body must be {\"orders\": [{\"sku\": ..., \"qty\": n}, ...]}")
                return self.reply(*import_orders([parse_item(i) for i in items]))
        except ValueError as exc:
            log(event="request", path=self.path, status="rejected", persisted="false", error=str(exc))
            return self.reply(400, {"error": str(exc)})
        return self.reply(404, {"error": "not found"})


def main():
    # Connect the long-lived clients before answering /health: the first request must not be the
    # one that opens them.
    deadline = time.monotonic() + 20
    while True:
        try:
            cache.ping()
            producer.list_topics(TOPIC, timeout=2)
            while not leader_connected.is_set() and time.monotonic() < deadline:
                producer.poll(0.05)  # serves the statistics callback
            if not leader_connected.is_set():
                raise KafkaException("no connection to the topic's leader")
            break
        except (redis.RedisError, KafkaException) as exc:
            if time.monotonic() > deadline:
                raise
            log(event="waiting", error=short(exc))
            time.sleep(0.2)
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    log(event="listening", port=PORT, topic=TOPIC, bug=BUG or None)
    server.serve_forever()


if __name__ == "__main__":
    main()
