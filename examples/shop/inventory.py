"""The shop's inventory: consumes order-events and reserves stock in PostgreSQL.

For each message, in ONE database transaction:
  1. INSERT INTO processed (order_id): a redelivered order is skipped (idempotency);
  2. UPDATE stock SET quantity = quantity - qty WHERE sku = ... AND quantity >= qty RETURNING quantity
     (stock never goes below zero: no row means "rejected");
  3. append one line to the ledger file and fsync it;
then COMMIT the database, commit the Kafka offset synchronously, and log
{"event": "reserve", "order_id", "sku", "stock": <quantity now>, "result": "ok" | "rejected"}.

A database error rolls back, logs result "error" and retries the same message a moment later.
A failed offset commit (the consumer was dropped from the group because processing took longer than
max.poll.interval.ms) is logged; the message comes back after the rejoin and step 1 skips it.

Environment: DATABASE_URL, KAFKA_BOOTSTRAP, INVENTORY_GROUP (default "inventory"),
INVENTORY_HEALTH_PORT (GET /health: 200 once the topic exists and the consumer has subscribed, 503
before; the group join that assigns its partitions follows in the background),
INVENTORY_LEDGER (the ledger file), SHOP_TOPIC (default order-events), SHOP_BUG:
  negative-stock  no idempotency and no stock guard: a redelivered message is applied twice and
                  stock can go below zero
  message-lost    a message whose processing took too long makes the worker give up for good
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
KAFKA_BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
GROUP = os.environ.get("INVENTORY_GROUP", "inventory")
HEALTH_PORT = int(os.environ.get("INVENTORY_HEALTH_PORT", "8081"))
LEDGER = os.environ.get("INVENTORY_LEDGER", "/tmp/shop-inventory.ledger")
TOPIC = os.environ.get("SHOP_TOPIC", "order-events")
BUG = os.environ.get("SHOP_BUG", "")
GIVE_UP_AFTER = 5.0  # message-lost: the buggy worker's patience for one message, in seconds

subscribed = threading.Event()
_log_lock = threading.Lock()


def log(**fields):
    line = json.dumps(fields, separators=(",", ":"))
    with _log_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def short(exc):
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


class Health(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        ready = self.path == "/health" and subscribed.is_set()
        body = b'{"status":"ok"}' if ready else b'{"status":"starting"}'
        self.send_response(200 if ready else 503)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def ensure_topic():
    """Create the topic (one partition) so the consumer has something to be assigned."""
    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    futures = admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    for future in futures.values():
        try:
            future.result(timeout=10)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def append_ledger(line):
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def reserve(conn, order):
    """One transaction; returns (result, stock) or raises psycopg.Error."""
    order_id, sku, qty = order["order_id"], order["sku"], int(order["qty"])
    with conn.transaction():
        if BUG != "negative-stock":
            first = conn.execute(
                "INSERT INTO processed (order_id) VALUES (%s) ON CONFLICT DO NOTHING RETURNING order_id",
                (order_id,),
            ).fetchone()
            if first is None:
                return "duplicate", None
            row = conn.execute(
                "UPDATE stock SET quantity = quantity - %s WHERE sku = %s AND quantity >= %s RETURNING quantity",
                (qty, sku, qty),
            ).fetchone()
        else:
            # BUG: no idempotency check and no guard: every delivery is applied, whatever the stock.
            row = conn.execute(
                "UPDATE stock SET quantity = quantity - %s WHERE sku = %s RETURNING quantity", (qty, sku)
            ).fetchone()
        if row is None:
            current = conn.execute("SELECT quantity FROM stock WHERE sku = %s", (sku,)).fetchone()
            return "rejected", current[0] if current else 0
        append_ledger(json.dumps({"order_id": order_id, "sku": sku, "qty": qty, "stock": row[0]}) + "\n")
        return "ok", row[0]


def on_assign(consumer, partitions):
    log(event="assigned", partitions=[p.partition for p in partitions])


def on_revoke(consumer, partitions):
    log(event="revoked", partitions=[p.partition for p in partitions])


def run():
    ensure_topic()
    consumer = Consumer(
        {
            "bootstrap.servers": KAFKA_BOOTSTRAP,
            "group.id": GROUP,
            # Tansu holds the leader's JoinGroup of a forming group until half of this has passed,
            # re-checking once a second: 6000 made every start (and every rejoin) wait 3 s, 2000
            # waits the minimum of one check, 1 s. (Apache Kafka would refuse it: its brokers'
            # group.min.session.timeout.ms is 6000.) Heartbeats come from librdkafka's own thread,
            # so a slow message does not end the session; max.poll.interval.ms does.
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 500,  # a third of the session timeout, as librdkafka advises
            # The consumer_slow fault (an 8 s fsync) relies on this: the consumer leaves the group,
            # its offset commit fails, and the message is delivered again after the rejoin.
            "max.poll.interval.ms": 6000,  # librdkafka wants it >= session.timeout.ms
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([TOPIC], on_assign=on_assign, on_revoke=on_revoke)
    # Ready now, as a consumer behind a readiness probe is: it reads from the earliest offset once
    # the group has assigned it the partition (at least 1 s on Tansu, see above), so nothing sent
    # meanwhile is missed, and a test that needs the reservation waits for its log line.
    subscribed.set()
    conn = None
    while True:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log(event="consumer_error", error=str(msg.error()))
            continue
        try:
            order = json.loads(msg.value())
            order["order_id"]
        except (ValueError, TypeError, KeyError):
            log(event="reserve", offset=msg.offset(), result="skipped", error="not an order event")
            consumer.commit(message=msg, asynchronous=False)
            continue
        started = time.monotonic()
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(DATABASE_URL, connect_timeout=2)
            result, stock = reserve(conn, order)
        except (psycopg.Error, OSError) as exc:
            log(event="reserve", order_id=order["order_id"], sku=order.get("sku"), result="error",
                error=short(exc))
            if conn is not None:
                conn.close()
                conn = None
            # try the same message again in a moment
            consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
            time.sleep(0.5)
            continue
        took = time.monotonic() - started
        if BUG == "message-lost" and took > GIVE_UP_AFTER:
            # BUG: the worker gives up on a slow message, and on consuming altogether. Nothing is
            # committed, nothing restarts it, and /health still answers 200.
            log(event="worker_stopped", order_id=order["order_id"], took_ms=int(took * 1000))
            return
        committed = "true"
        try:
            consumer.commit(message=msg, asynchronous=False)
        except KafkaException as exc:
            committed = "false"
            log(event="commit_failed", order_id=order["order_id"], offset=msg.offset(), error=short(exc))
        fields = {"event": "reserve", "order_id": order["order_id"], "sku": order.get("sku"),
                  "qty": order.get("qty"), "result": result, "offset": msg.offset(), "committed": committed,
                  "took_ms": int(took * 1000)}
        if stock is not None:
            fields["stock"] = stock
        log(**fields)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", HEALTH_PORT), Health)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(event="listening", health_port=HEALTH_PORT, group=GROUP, topic=TOPIC, bug=BUG or None)
    run()
    # the worker stopped (message-lost): stay up, as a stuck consumer in production would
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
