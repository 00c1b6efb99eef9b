"""PostgreSQL steps through the front door: a spec declares `postgres(...)` from the stdlib (a real
PostgreSQL 15 started by the runner), its tests call `db.main.query/exec`, and the run's results are
checked here. One spec, run once for the module: each of its tests gets a fresh server anyway."""

from __future__ import annotations

import pytest

from faultbox.model.result import RunResult
from support import assert_passed, find_test, free_port, run_spec_text

SPEC = """
load("@faultbox/services.star", "postgres")

SCHEMA = "CREATE TABLE orders (id serial PRIMARY KEY, status text NOT NULL, amount numeric(10,2), note text)"

def seed_db():
    # A def, not a lambda: the seed refers to `db`, bound by the statement below.
    r = db.main.exec(sql = SCHEMA)
    assert_true(r.ok, "seed failed: " + r.error)

db = postgres("db", seed = seed_db)

# proxy = False: through a proxy, a refused connection is seen as one reset after connecting.
ghost = service("ghost", "python3", interface("main", "postgres", REFUSED_PORT, proxy = False),
    args = ["-c", "import time; time.sleep(60)"])
# Accepts connections (the kernel does, from its backlog) and never answers.
LISTEN_SILENTLY = ("import socket, time; s = socket.socket(); s.bind(('127.0.0.1', SILENT_PORT)); " +
    "s.listen(); time.sleep(60)")
silent = service("silent", "python3", interface("main", "postgres", SILENT_PORT),
    args = ["-c", LISTEN_SILENTLY], healthcheck = tcp("127.0.0.1:SILENT_PORT"))

def test_seed_creates_the_schema():
    r = db.main.query(sql = "SELECT column_name FROM information_schema.columns " +
                            "WHERE table_name = 'orders' ORDER BY ordinal_position")
    assert_true(r.ok, r.error)
    assert_eq([row["column_name"] for row in r.data], ["id", "status", "amount", "note"])

def test_seed_page_count_expression():
    # The seed page's exact expression: an int that assert_eq compares with 0.
    assert_eq(db.main.query(sql="SELECT count(*) as n FROM orders WHERE status='pending'").data[0]["n"], 0)
    db.main.exec(sql = "INSERT INTO orders (status) VALUES ('pending'), ('pending'), ('done')")
    assert_eq(db.main.query(sql="SELECT count(*) as n FROM orders WHERE status='pending'").data[0]["n"], 2)

def test_zero_rows_is_an_empty_list():
    r = db.main.query(sql = "SELECT * FROM orders")
    assert_true(r.ok, r.error)
    assert_eq(r.data, [])
    assert_eq(len(r.data), 0)
    assert_eq(r.body, "[]")

def test_query_rows_and_types():
    r = db.main.query(sql = "SELECT 1 AS i, 9007199254740993::bigint AS big, 1.25::float8 AS f, " +
        "12.50::numeric AS dec, 7.00::numeric(10,2) AS whole, sum(x) AS total, " +
        "'hé' AS t, true AS b, NULL AS nothing, " +
        "'2024-05-01'::date AS d, '2024-05-01 10:00:00'::timestamp AS ts, " +
        "'2024-05-01 10:00:00+00'::timestamptz AS tstz, 'infinity'::timestamp AS forever, " +
        "'{\\"a\\": [1, 2], \\"b\\": null}'::jsonb AS j, ARRAY[1, 2, 3] AS arr, 'abc'::bytea AS raw, " +
        "'\\\\xff00'::bytea AS bin, '00000000-0000-0000-0000-000000000001'::uuid AS u, " +
        "'1 mon 2 days 03:00'::interval AS span, 1 AS i " +
        "FROM (VALUES (1), (2)) AS v(x)")
    assert_true(r.ok, r.error)
    assert_eq(len(r.data), 1)
    row = r.data[0]
    assert_eq(row["i"], 1)
    assert_eq(row["i_2"], 1, "a repeated column name gets a suffix")
    assert_eq(row["big"], 9007199254740993)
    assert_eq(row["f"], 1.25)
    assert_eq(row["dec"], 12.5)
    assert_eq(type(row["dec"]), "float")
    assert_eq(row["whole"], 7)
    assert_eq(type(row["whole"]), "int")
    assert_eq(row["total"], 3)
    assert_eq(type(row["total"]), "int", "sum() is numeric: integral values come back as int")
    assert_eq(row["t"], "hé")
    assert_eq(row["b"], True)
    assert_eq(row["nothing"], None)
    assert_eq(row["d"], "2024-05-01")
    assert_eq(row["ts"], "2024-05-01T10:00:00")
    assert_true(row["tstz"].startswith("2024-05-01T"), row["tstz"])
    assert_eq(row["forever"], "infinity")
    assert_eq(row["j"], {"a": [1, 2], "b": None})
    assert_eq(row["j"]["a"][1], 2)
    assert_eq(row["arr"], [1, 2, 3])
    assert_eq(row["raw"], "abc")
    assert_eq(row["bin"], "\\\\xff00")
    assert_eq(row["u"], "00000000-0000-0000-0000-000000000001")
    assert_eq(row["span"], "1 mon 2 days 03:00:00")
    assert_eq(json.decode(r.body)[0]["total"], 3)
    assert_eq(r.status, 0)
    assert_eq(r.error, "")
    assert_true(r.duration_ms >= 0)

def test_exec_rows_affected():
    r = db.main.exec(sql = "INSERT INTO orders (status, amount) VALUES ('pending', 1), ('pending', 2), " +
                           "('done', 3)")
    assert_true(r.ok, r.error)
    assert_eq(r.data, {"rows_affected": 3})
    assert_eq(r.rows_affected, 3)
    update = db.main.exec(sql = "UPDATE orders SET status = 'done' WHERE status = 'pending'")
    assert_eq(update.data["rows_affected"], 2)
    assert_eq(db.main.exec(sql = "DELETE FROM orders WHERE false").rows_affected, 0)
    assert_eq(db.main.exec(sql = "CREATE INDEX ON orders (status)").data["rows_affected"], 0)

def test_several_statements_in_one_step():
    r = db.main.exec(sql = "BEGIN; INSERT INTO orders (status) VALUES ('a'), ('b'); " +
                           "UPDATE orders SET note = 'x'; COMMIT")
    assert_true(r.ok, r.error)
    assert_eq(r.rows_affected, 4, "the sum of the statements' row counts")
    q = db.main.query(sql = "UPDATE orders SET note = 'y'; SELECT status FROM orders ORDER BY status")
    assert_eq([row["status"] for row in q.data], ["a", "b"], "rows of the last statement that returns rows")

def test_transaction_left_open_is_rolled_back():
    r = db.main.exec(sql = "BEGIN; INSERT INTO orders (status) VALUES ('ghost')")
    assert_eq(r.ok, False)
    assert_true("rolled back" in r.error, r.error)
    assert_eq(db.main.query(sql = "SELECT count(*) AS n FROM orders").data[0]["n"], 0)
    assert_eq(db.main.query(sql = "SELECT 1 AS one").data, [{"one": 1}], "the session is usable afterwards")

def test_sql_errors_are_ok_false_with_sqlstate():
    r = db.main.query(sql = "SELECT * FROM nope")
    assert_eq(r.ok, False)
    assert_eq(r.error, '42P01 relation "nope" does not exist')
    assert_eq(r.data, None)
    assert_true(not r)
    bad = db.main.exec(sql = "SELEC 1")
    assert_eq(bad.error, '42601 syntax error at or near "SELEC"')
    dup = db.main.exec(sql = "INSERT INTO orders (id, status) VALUES (1, 'a'), (1, 'b')")
    assert_true(dup.error.startswith("23505 duplicate key value violates unique constraint"), dup.error)
    assert_eq(db.main.query(sql = "SELECT 2 AS two").data[0]["two"], 2,
              "an SQL error does not break the session")

def test_params():
    insert = "INSERT INTO orders (status, amount, note) VALUES ($1, $2, $3)"
    assert_eq(db.main.exec(sql = insert, params = ["pending", 19.99, "50% off"]).rows_affected, 1)
    assert_eq(db.main.exec(sql = insert, params = ["done", 5, None]).rows_affected, 1)
    # $n placeholders: a literal % needs no escaping
    r = db.main.query(sql = "SELECT status, amount, note FROM orders " +
                            "WHERE status = $1 AND amount > $2 AND note LIKE '%off'",
                      params = ["pending", 10])
    assert_true(r.ok, r.error)
    assert_eq(r.data, [{"status": "pending", "amount": 19.99, "note": "50% off"}])
    j = db.main.query(sql = "SELECT $1::jsonb -> 'k' AS k, $2::int[] AS arr, $3::text IS NULL AS isnull",
                      params = [{"k": [1, "x"]}, [4, 5], None])
    assert_eq(j.data[0], {"k": [1, "x"], "arr": [4, 5], "isnull": True})
    wrong = db.main.query(sql = "SELECT $1::int AS n", params = ["not a number"])
    assert_eq(wrong.ok, False)
    assert_true(wrong.error.startswith("22P02 "), wrong.error)

def test_statement_timeout_keeps_the_session():
    r = db.main.query(sql = "SELECT pg_sleep(5)", timeout = "500ms")
    assert_eq(r.ok, False)
    assert_eq(r.error, "57014 canceling statement due to statement timeout")
    assert_true(r.duration_ms < 1000, "took %d ms" % r.duration_ms)
    assert_eq(db.main.query(sql = "SELECT 3 AS n").data[0]["n"], 3)

def test_reconnects_after_the_server_ended_the_session():
    killed = db.main.query(sql = "SELECT pg_terminate_backend(pg_backend_pid())")
    assert_eq(killed.ok, False)
    assert_true(killed.error.startswith("57P01 "), killed.error)
    again = db.main.query(sql = "SELECT 4 AS n")
    assert_true(again.ok, again.error)
    assert_eq(again.data[0]["n"], 4)

def select_with_short_timeout():
    return db.main.query(sql = "SELECT 1 AS one", timeout = "300ms")

def test_no_reply_times_out_and_the_next_step_reconnects():
    # The server runs the query but its reply is held back: only the client-side deadline helps.
    r = fault(db, sendto = delay("1s"), run = select_with_short_timeout)
    assert_eq(r.ok, False)
    assert_true(r.error.startswith("timeout: no reply from PostgreSQL"), r.error)
    assert_true(r.duration_ms < 500, "took %d ms" % r.duration_ms)
    assert_eq(db.main.query(sql = "SELECT 2 AS two").data, [{"two": 2}])

def test_refused_server_is_ok_false():
    r = ghost.main.query(sql = "SELECT 1", timeout = "1s")
    assert_eq(r.ok, False)
    assert_true("Connection refused" in r.error, r.error)
    assert_true(r.duration_ms < 1000, "took %d ms" % r.duration_ms)

def test_silent_server_times_out_within_the_step_timeout():
    r = silent.main.exec(sql = "SELECT 1", timeout = "700ms")
    assert_eq(r.ok, False)
    assert_true(r.error.startswith("timeout: "), r.error)
    assert_true(r.duration_ms < 900, "took %d ms" % r.duration_ms)

def test_parallel_branches_have_sessions_of_their_own():
    slow = lambda: db.main.query(sql = "SELECT pg_backend_pid() AS pid FROM pg_sleep(0.3)")
    a, b = parallel(slow, slow)
    assert_true(a.ok and b.ok, "%s %s" % (a.error, b.error))
    assert_true(a.data[0]["pid"] != b.data[0]["pid"], "two branches, two sessions")
    steps = events(where = lambda e: e.type in ("step_send", "step_recv") and e.service == "db")
    assert_eq([e.type for e in steps][-4:], ["step_send", "step_send", "step_recv", "step_recv"])
    # a later parallel() reuses the sessions of the earlier one (a loop does not pile up connections)
    c, d = parallel(slow, slow)
    assert_eq(sorted([c.data[0]["pid"], d.data[0]["pid"]]), sorted([a.data[0]["pid"], b.data[0]["pid"]]))
"""

# A PANIC under fsync EIO, in a spec of its own. The WAL barrier after the failed step does not wait
# for a server that is restarting, so the fault ends with its step and the server recovers.
CRASH_SPEC = """
load("@faultbox/services.star", "postgres")

def seed_db():
    db.main.exec(sql = "CREATE TABLE orders (id serial PRIMARY KEY, status text)")

db = postgres("db", seed = seed_db)

def insert_row():
    return db.main.exec(sql = "INSERT INTO orders (status) VALUES ('lost?')")

def test_panic_restart_then_reconnect():
    # fdatasync EIO on the WAL makes PostgreSQL PANIC and restart (DECISIONS §23). Only the WAL's
    # flush: crash recovery's fsyncs of the data directory start while the step is still returning.
    r = fault(db, fdatasync = deny("EIO", path = "**/pg_wal/*"), run = insert_row)
    assert_eq(r.ok, False)
    assert_true(r.error != "", "a failed commit says why")
    # Recovery takes as long as the machine lets it: try for up to 60 s (a spec has no clock: the
    # tries' own durations and the pauses between them add up).
    back = None
    waited_ms = 0
    for i in range(100000):
        q = db.main.query(sql = "SELECT 1 AS up", timeout = "1s")
        if q.ok:
            back = q
            break
        assert_true(q.error != "", "a refused or restarting server is reported")
        waited_ms += q.duration_ms + 100
        if waited_ms > 60000:
            break
        sleep("100ms")
    assert_true(back != None, "the client reconnects once the server is back (tried for 60 s)")
    assert_eq(back.data, [{"up": 1}])
"""


EXPECTED = [
    "test_seed_creates_the_schema",
    "test_seed_page_count_expression",
    "test_zero_rows_is_an_empty_list",
    "test_query_rows_and_types",
    "test_exec_rows_affected",
    "test_several_statements_in_one_step",
    "test_transaction_left_open_is_rolled_back",
    "test_sql_errors_are_ok_false_with_sqlstate",
    "test_params",
    "test_statement_timeout_keeps_the_session",
    "test_reconnects_after_the_server_ended_the_session",
    "test_no_reply_times_out_and_the_next_step_reconnects",
    "test_refused_server_is_ok_false",
    "test_silent_server_times_out_within_the_step_timeout",
    "test_parallel_branches_have_sessions_of_their_own",
]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    text = SPEC.replace("REFUSED_PORT", str(free_port())).replace("SILENT_PORT", str(free_port()))
    return run_spec_text(tmp_path_factory.mktemp("postgres"), text)


def test_every_spec_test_ran(result: RunResult) -> None:
    assert sorted(t.name for t in result.tests) == sorted(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_spec(result: RunResult, name: str) -> None:
    assert_passed(find_test(result, name))


@pytest.fixture(scope="module")
def crash_result(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    # 120 s: the body's deadline must outlast its 60 s of tries while the server recovers
    return run_spec_text(tmp_path_factory.mktemp("postgres-crash"), CRASH_SPEC, timeout=120)


def test_panic_restart_then_reconnect(crash_result: RunResult) -> None:
    assert_passed(find_test(crash_result, "test_panic_restart_then_reconnect"))
