"""WalSource against a real PostgreSQL 15 with wal2json."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from depserver import Server

from faultbox.deps import ServerPlan, free_port, postgres
from faultbox.sources import ServerDown, SourceError
from faultbox.sources.wal import WalSource, parse_lsn
from support import wait_until

Serve = Callable[[ServerPlan], Server]


class Sink:
    """Collects emitted events; optionally slow, to prove that a barrier waits for the emit."""

    def __init__(self, delay: float = 0.0) -> None:
        self.events: list[tuple[str, str, dict[str, str]]] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, type: str, service: str, fields: dict[str, str], data: dict[str, object] | None) -> None:
        assert data is None
        assert all(isinstance(v, str) for v in fields.values())
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            self.events.append((type, service, fields))

    def rows(self, table: str) -> list[dict[str, str]]:
        with self.lock:
            return [f for _, _, f in self.events if f["table"] == table]


@pytest.fixture
def pg(workdir: str, serve: Serve) -> Server:
    return serve(postgres.prepare(workdir, free_port()))


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def source(pg: Server, sink: Sink) -> Iterator[WalSource]:
    src = WalSource(pg.plan.endpoint, "db", sink)
    src.start()
    yield src
    src.stop()


def sql(server: Server, *statements: str) -> None:
    with psycopg.connect(server.plan.endpoint, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def test_insert_update_delete_with_column_values(pg: Server, source: WalSource, sink: Sink) -> None:
    sql(
        pg,
        "CREATE TABLE orders (id int PRIMARY KEY, status text, amount numeric(8,2), paid bool, "
        "meta jsonb, note text, action text)",
        "INSERT INTO orders VALUES (1, 'new', 10.50, false, '{\"a\": [1, 2]}', NULL, 'x')",
        "UPDATE orders SET status = 'paid', paid = true WHERE id = 1",
        "DELETE FROM orders WHERE id = 1",
    )
    source.barrier(5)
    ins, upd, dele = sink.rows("orders")
    assert all(e[0] == "wal" and e[1] == "db" for e in sink.events)
    assert {k: ins[k] for k in ("action", "schema", "table", "id", "status", "amount", "paid", "meta")} == {
        "action": "INSERT",
        "schema": "public",
        "table": "orders",
        "id": "1",
        "status": "new",
        "amount": "10.50",  # numeric keeps PostgreSQL's spelling
        "paid": "false",
        "meta": '{"a": [1, 2]}',
    }
    assert "note" not in ins  # NULL -> absent
    assert ins["col_action"] == "x"  # a column named like a meta field is renamed
    assert upd["action"] == "UPDATE" and upd["status"] == "paid" and upd["paid"] == "true"
    assert upd["old_id"] == "1"
    assert dele["action"] == "DELETE" and dele["old_id"] == "1" and dele["id"] == "1"
    lsns = [parse_lsn(e["lsn"]) for e in (ins, upd, dele)]
    assert lsns == sorted(lsns) and int(ins["xid"]) < int(upd["xid"]) < int(dele["xid"])


def test_events_come_in_commit_order(pg: Server, source: WalSource, sink: Sink) -> None:
    sql(pg, "CREATE TABLE t (id int PRIMARY KEY)")
    with (
        psycopg.connect(pg.plan.endpoint) as first,
        psycopg.connect(pg.plan.endpoint) as second,
    ):
        first.execute("INSERT INTO t VALUES (1)")  # written first...
        second.execute("INSERT INTO t VALUES (2)")
        second.execute("INSERT INTO t VALUES (3)")
        second.commit()
        first.commit()  # ...committed last
    source.barrier(5)
    assert [e["id"] for e in sink.rows("t")] == ["2", "3", "1"]
    first_xid = {e["id"]: e["xid"] for e in sink.rows("t")}
    assert first_xid["2"] == first_xid["3"] != first_xid["1"]


def test_barrier_when_idle_returns_in_milliseconds(pg: Server, source: WalSource) -> None:
    # Idle, a barrier costs one query: compared with a plain query's round trip measured alongside
    # (a loaded machine slows both), never with a fixed budget. The margin stays far below the
    # reader's idle tick (1 s), the wait this test exists to rule out.
    source.barrier(5)
    timings, round_trips = [], []
    with psycopg.connect(pg.plan.endpoint, autocommit=True) as conn:
        for _ in range(20):
            start = time.perf_counter()
            source.barrier(5)
            timings.append(time.perf_counter() - start)
            start = time.perf_counter()
            conn.execute("SELECT pg_current_wal_flush_lsn()")
            round_trips.append(time.perf_counter() - start)
    assert statistics.median(timings) < statistics.median(round_trips) + 0.1, (timings, round_trips)


def test_barrier_passes_wal_without_row_changes(pg: Server, source: WalSource) -> None:
    # A checkpoint writes WAL that decodes to nothing: the decoder's position must still reach the
    # flush LSN (through keepalives), or every later barrier would time out.
    before = source.stats()["decoded_lsn"]
    sql(pg, "CHECKPOINT", "SELECT pg_switch_wal()", "CHECKPOINT")
    source.barrier(10)  # raises SourceError if the decoder never reaches the flush LSN
    assert source.stats()["decoded_lsn"] > before
    assert source.stats()["events"] == 0


def test_barrier_waits_for_a_commit_just_made(pg: Server) -> None:
    slow = Sink(delay=0.05)  # the emit takes 50 ms: a barrier that did not wait would miss it
    src = WalSource(pg.plan.endpoint, "db", slow)
    src.start()
    try:
        sql(pg, "CREATE TABLE t (id int)")
        with psycopg.connect(pg.plan.endpoint, autocommit=True) as conn:
            for i in range(5):
                conn.execute("INSERT INTO t VALUES (%s)", (i,))
                src.barrier(5)
                assert [e["id"] for e in slow.rows("t")] == [str(j) for j in range(i + 1)]
    finally:
        src.stop()


def test_reconnects_after_sigkill_and_deduplicates_by_lsn(pg: Server, source: WalSource, sink: Sink) -> None:
    sql(pg, "CREATE TABLE t (id int PRIMARY KEY)")
    for i in range(5):
        sql(pg, f"INSERT INTO t VALUES ({i})")
    source.barrier(5)
    pg.kill()  # SIGKILL to the whole group: no shutdown checkpoint, the slot's position on disk is old
    started = time.monotonic()
    with pytest.raises(ServerDown):  # a server that is down committed nothing: no waiting for it
        source.barrier(30)
    # ServerDown, not the SourceError of a timeout: it did not wait (no fixed budget: load slows it).
    assert time.monotonic() - started < 30
    pg.start()  # same plan, same data dir: crash recovery
    for i in range(5, 10):
        sql(pg, f"INSERT INTO t VALUES ({i})")
    source.barrier(15)
    ids = [e["id"] for e in sink.rows("t")]
    assert ids == [str(i) for i in range(10)]  # exactly once, in order
    stats = source.stats()
    assert stats["reconnects"] >= 1
    # The server re-sent what it had sent before the crash; the LSN check dropped it.
    assert stats["duplicates_skipped"] >= 5, stats


def test_survives_a_crash_restart_of_the_cluster(pg: Server, source: WalSource, sink: Sink) -> None:
    # A backend killed by a signal makes the postmaster reset every child, as after a PANIC
    # (DECISIONS §23): the replication stream drops while the postmaster stays up.
    sql(pg, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1)")
    source.barrier(5)
    victim = psycopg.connect(pg.plan.endpoint, autocommit=True)
    row = victim.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    os.kill(row[0], signal.SIGKILL)  # a process of the server this test started
    victim.close()
    # An INSERT that succeeds does not mean the reset is over: the postmaster resets the cluster
    # when it reaps the killed backend, and on a loaded machine a new connection can commit before
    # that (the barrier then meets "the database system is in recovery mode": ServerDown, on
    # purpose). The reset kills the reader's walsender, and a replication connection is accepted
    # only once recovery is over: the reader reconnecting is the end of the crash-restart.
    wait_until(lambda: source.stats()["reconnects"] >= 1, "the wal reader to reconnect after the reset", 60)
    sql(pg, "INSERT INTO t VALUES (2)")
    source.barrier(15)
    assert [e["id"] for e in sink.rows("t")] == ["1", "2"]
    assert source.stats()["reconnects"] >= 1


def test_stale_inactive_slot_is_reclaimed_and_own_slot_dropped(pg: Server, sink: Sink) -> None:
    sql(
        pg,
        "SELECT pg_create_logical_replication_slot('faultbox_stale', 'wal2json')",
        "SELECT pg_create_logical_replication_slot('someone_elses', 'wal2json')",
    )
    src = WalSource(pg.plan.endpoint, "db", sink)
    src.start()
    with psycopg.connect(pg.plan.endpoint, autocommit=True) as conn:
        slots = {r[0]: r[1] for r in conn.execute("SELECT slot_name, active FROM pg_replication_slots")}
    assert "faultbox_stale" not in slots
    assert slots["someone_elses"] is False  # not ours: kept
    assert slots[src.slot] is True
    assert src.stats()["stale_slots_dropped"] == 1
    src.stop()
    with psycopg.connect(pg.plan.endpoint, autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots")]
    assert names == ["someone_elses"]


def test_start_fails_clearly_without_a_server(sink: Sink) -> None:
    src = WalSource(postgres.dsn(free_port()), "db", sink)
    with pytest.raises(SourceError, match="could not start logical decoding"):
        src.start()
