"""Trace ingest with monitors, and trace queries (issue: invariants).

    .venv/bin/python bench/bench_trace.py

Targets: ingest with five monitors (two calling events(where=...), as in the seed's Patterns 2 and
4) >= 50,000 events/s over 100,000 events; events(type=, service=) over 100,000 events <= 5 ms.
The monitors are real spec code, compiled from a .star file like any spec.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from faultbox.model.event import Event
from faultbox.model.monitor import Monitor
from faultbox.spec import host as host_mod
from faultbox.spec import load_spec
from faultbox.spec.compile import describe_exception
from faultbox.trace.log import TraceLog
from faultbox.trace.monitors import MonitorSet

MONITORS = """
def no_negative_stock(event):
    if (event["type"] == "stdout" and event["service"] == "inventory"
            and event.get("stock") != None):
        stock = int(event["stock"])
        if stock < 0:
            fail("stock went negative: " + str(stock))

def order_confirmed_means_persisted(event):
    if (event["type"] == "stdout" and event["service"] == "api"
            and event.get("status") == "confirmed"
            and event.get("persisted") != "true"):
        fail("order confirmed but not persisted!")

def no_orphan_events(event):
    if event["type"] == "topic" and event.get("order_id"):
        db_rows = events(where=lambda e:
            e.type == "wal" and e.data.get("action") == "INSERT"
            and e.data.get("order_id") == event["order_id"])
        if len(db_rows) == 0:
            fail("orphan event: order " + event["order_id"] + " not in DB")

def one_publish_per_order(event):
    if event["type"] == "topic" and event.get("topic") == "order-events":
        publishes = events(where=lambda e:
            e.type == "topic" and e.data.get("topic") == "order-events"
            and e.data.get("order_id") == event["order_id"])
        if len(publishes) > 1:
            fail("duplicate event: " + str(len(publishes)) + " publishes")

stock_check = monitor(no_negative_stock, service="inventory")
persistence_check = monitor(order_confirmed_means_persisted, service="api")
orphan_check = monitor(no_orphan_events)
dedup_check = monitor(one_publish_per_order)
step_count = monitor("steps_balanced", on=lambda e: e.type == "step_send" or e.type == "step_recv",
                     state_init=0, update=lambda e, s: s + (1 if e.type == "step_send" else -1),
                     check=lambda e, s: s >= 0 and s <= 1)
"""


class QueryHost:
    """Just enough of a test host for events() inside monitors: a plain query of the trace."""

    test_name = "bench"

    def __init__(self, log: TraceLog) -> None:
        self.log = log

    def query(self, filters: Mapping[str, str], where: Callable[[Event], Any] | None) -> list[Event]:
        return self.log.select(filters, where)

    def count_assertion(self) -> None:
        pass


def workload(orders: int) -> list[tuple[str, str, dict[str, str], Any]]:
    """10 events per order, shaped like the example shop's trace."""
    out: list[tuple[str, str, dict[str, str], Any]] = []
    stock = 10**9
    for i in range(orders):
        oid = f"ord-{i}"
        stock -= 1
        out += [
            ("step_send", "api", {"method": "post", "path": "/orders"}, None),
            ("syscall", "db", {"syscall": "pwrite64", "pid": "7", "decision": "allow", "path": "/pg/wal/0001"}, None),
            ("syscall", "db", {"syscall": "fdatasync", "pid": "7", "decision": "allow", "path": "/pg/wal/0001"}, None),
            ("wal", "db", {"action": "INSERT", "schema": "public", "table": "orders", "order_id": oid}, None),
            ("syscall", "api", {"syscall": "connect", "pid": "9", "decision": "allow"}, None),
            ("stdout", "inventory", {"stock": str(stock), "sku": "w"}, {"stock": stock, "sku": "w"}),
            ("topic", "bus", {"action": "produce", "topic": "order-events", "order_id": oid}, None),
            (
                "stdout",
                "api",
                {"status": "confirmed", "persisted": "true", "order_id": oid},
                {"status": "confirmed", "persisted": True, "order_id": oid},
            ),
            ("syscall", "db", {"syscall": "write", "pid": "8", "decision": "allow", "path": "socket:[1]"}, None),
            ("step_recv", "api", {"status": "201", "ok": "true"}, None),
        ]
    return out


def ingest(rows: list[tuple[str, str, dict[str, str], Any]], monitors: list[Monitor]) -> tuple[float, TraceLog]:
    log = TraceLog()
    mset = MonitorSet(log, describe_exception)
    for m in monitors:
        mset.add(m)
    host_mod.set_current(QueryHost(log))  # type: ignore[arg-type]
    try:
        start = time.perf_counter()
        for type_, service, fields, data in rows:
            log.append(Event(type_, service, fields, data))
        took = time.perf_counter() - start
    finally:
        host_mod.set_current(None)
    assert mset.violation is None, mset.violation
    return took, log


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "invariants.star"
        path.write_text(MONITORS)
        g = load_spec(str(path)).root.globals
    monitors = [g[n] for n in ("stock_check", "persistence_check", "orphan_check", "dedup_check", "step_count")]
    rows = workload(10_000)
    bare = min(ingest(rows, [])[0] for _ in range(3))
    timed = [ingest(rows, monitors) for _ in range(3)]
    with_monitors = min(t for t, _ in timed)
    log = timed[0][1]
    n = len(rows)

    def q(**filters: str) -> float:
        samples = []
        for _ in range(20):
            start = time.perf_counter()
            log.select(filters)
            samples.append(time.perf_counter() - start)
        return statistics.median(samples) * 1000

    q_wal = q(type="wal", service="db")
    q_sys = q(type="syscall", service="db")
    q_one = q(type="topic", order_id="ord-5000")
    rate = n / with_monitors
    print(f"trace ingest over {n:,} events (best of 3)")
    print(f"  {'no monitors':<44} {n / bare:>12,.0f} events/s")
    print(
        f"  {'5 monitors, 2 calling events(where=...)':<44} {rate:>12,.0f} events/s   "
        f"target >= 50,000  {'PASS' if rate >= 50_000 else 'MISS'}"
    )
    print(f"  {'cost of the monitors per event':<44} {(with_monitors - bare) / n * 1e6:>12.2f} us")
    print(f"queries over {len(log):,} events (median of 20)")
    print(
        f"  {'events(type=wal, service=db) -> 10,000':<44} {q_wal:>12.2f} ms   target <= 5 ms  "
        f"{'PASS' if q_wal <= 5 else 'MISS'}"
    )
    print(f"  {'events(type=syscall, service=db) -> 30,000':<44} {q_sys:>12.2f} ms")
    print(f"  {'events(type=topic, order_id=X) -> 1':<44} {q_one * 1000:>12.1f} us")


if __name__ == "__main__":
    main()
