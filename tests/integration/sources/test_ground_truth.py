"""Ground-truth events from real servers, through specs: `wal` rows from PostgreSQL's logical
decoding, `topic` messages from the broker, and what a database fault does to both."""

from __future__ import annotations

SPEC = """
load("@faultbox/services.star", "postgres", "kafka")

def schema():
    db.main.exec(sql = "CREATE TABLE orders (order_id text PRIMARY KEY, qty int, status text, note text)")

db = postgres("db", seed = schema)
bus = kafka("bus")

def sql(text):
    r = db.main.exec(sql = text)
    assert_true(r.ok, r.error)
    return r

def test_row_changes():
    sql("INSERT INTO orders VALUES ('o1', 2, 'pending', NULL)")
    # no waiting: the step returns only once its commit is in the trace
    [ins] = events(type = "wal", action = "INSERT")
    assert_eq([ins.schema, ins.table, ins.order_id, ins.qty, ins.status], ["public", "orders", "o1", "2", "pending"])
    assert_eq(ins.get("note"), None)
    sql("UPDATE orders SET status = 'paid', qty = 3 WHERE order_id = 'o1'")
    sql("INSERT INTO orders VALUES ('o2', 1, 'pending', 'gift')")
    sql("DELETE FROM orders WHERE order_id = 'o2'")
    rows = events(type = "wal")
    assert_eq([(e.action, e.order_id) for e in rows],
              [("INSERT", "o1"), ("UPDATE", "o1"), ("INSERT", "o2"), ("DELETE", "o2")])
    assert_eq(rows[1].status, "paid")
    assert_eq(rows[1].qty, "3")
    assert_true(rows[0].lsn < rows[1].lsn or len(rows[0].lsn) < len(rows[1].lsn), "commit order")
    assert_true(rows[0].xid != rows[1].xid)
    # the seed page's Pattern 2 query shape
    assert_eq(len(events(where = lambda e: e.type == "wal" and e.data.get("action") == "INSERT"
                         and e.data.get("order_id") == "o2")), 1)

def test_one_transaction_many_rows():
    db.main.exec(sql = "INSERT INTO orders SELECT 'bulk' || g, g, 'pending', NULL FROM generate_series(1, 50) g")
    assert_eq(len(events(type = "wal", table = "orders", action = "INSERT")), 50)
    assert_eq(len(set_of([e.xid for e in events(type = "wal")])), 1)

def set_of(items):
    return {x: True for x in items}.keys()

def test_topic_messages():
    r = bus.main.publish(topic = "order-events", key = "o1", value = {"order_id": "o1", "qty": 2})
    assert_true(r.ok, r.error)
    [produced] = events(type = "topic", action = "produce")
    assert_eq([produced.topic, produced.key, produced.order_id, produced.qty], ["order-events", "o1", "o1", "2"])
    assert_eq(json.decode(produced.value)["qty"], 2)
    got = bus.main.consume(topic = "order-events", group = "shipping", timeout = "20s")
    assert_true(got.ok, got.error)
    assert_eq(got.data["key"], "o1")
    assert_eventually(type = "topic", action = "consume", group = "shipping", order_id = "o1", timeout = "10s")
    assert_eq(len(events(type = "topic", action = "produce")), 1, "observing added no messages")

def insert(order_id):
    return db.main.exec(sql = "INSERT INTO orders VALUES ('" + order_id + "', 1, 'pending', NULL)")

def test_fsync_error_on_the_database():
    assert_true(insert("before").ok)
    # Only the commit's flush of the WAL: PostgreSQL PANICs and starts crash recovery at once, and
    # recovery's own fsyncs of the data directory must not fall inside the fault's scope.
    r = fault(db, fdatasync = deny("EIO", path = "**/pg_wal/*"), run = lambda: insert("during"))
    assert_eq(r.ok, False)
    assert_true(r.error.startswith("58030"), "an I/O error, with its SQLSTATE: " + r.error)
    assert_eventually(type = "syscall", service = "db", syscall = "fdatasync", decision = "deny(EIO)")
    # PostgreSQL PANICs and recovers (DECISIONS §23); wait until it answers again, for up to 60 s
    # of tries (a spec has no clock: the tries' own durations and the pauses between them add up)
    back = None
    waited_ms = 0
    for i in range(100000):
        q = db.main.query(sql = "SELECT order_id FROM orders ORDER BY order_id", timeout = "1s")
        if q.ok:
            back = q
            break
        waited_ms += q.duration_ms + 100
        if waited_ms > 60000:
            break
        sleep("100ms")
    assert_true(back != None, "the database came back within 60 s")
    assert_true(insert("after").ok)
    wal = [e.order_id for e in events(type = "wal", action = "INSERT")]
    # The client was told the commit failed, yet the row was in the WAL it had already written:
    # recovery keeps it, and the stream shows it exactly once.
    assert_eq(wal, ["before", "during", "after"])
    assert_eq([row["order_id"] for row in back.data], ["before", "during"])
"""


def test_wal_and_topic_events_through_a_spec(run) -> None:
    res = run(SPEC, timeout=120)  # outlasts the 60 s the fsync test gives the database to recover
    for t in res.result.tests:
        assert t.outcome.value == "passed", f"{t.name}: {t.reason}"
    fsync = res.test("fsync_error_on_the_database")
    restarts = [e for e in fsync.events if e.type == "service_exited" and e.service == "db"]
    assert [e.fields["reason"] for e in restarts] == ["stopped"], "the postmaster itself survived the PANIC"


def test_a_failed_step_in_seed_fails_the_test(run) -> None:
    spec = """
load("@faultbox/services.star", "postgres")

def broken_schema():
    db.main.exec(sql = "CREATE TABEL orders (id int)")

db = postgres("db", seed = broken_schema)

def test_x():
    pass
"""
    t = run(spec).test("x")
    assert t.outcome.value == "failed"
    assert t.reason.startswith("seed of service db failed: db.main.exec() failed: 42601")
