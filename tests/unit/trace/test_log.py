"""The trace: seq and vector clocks, indexed queries, where-lambda hints, monitors."""

from __future__ import annotations

import threading

from faultbox.errors import SpecFailure
from faultbox.model.event import Event
from faultbox.model.monitor import Monitor
from faultbox.trace.log import TraceLog
from faultbox.trace.monitors import MonitorSet


def filled(n: int = 1000) -> TraceLog:
    log = TraceLog()
    for i in range(n):
        t = ("syscall", "stdout", "wal")[i % 3]
        log.append(Event(t, f"s{i % 5}", {"i": str(i), "k": "odd" if i % 2 else "even"}))
    return log


def describe(exc: BaseException) -> tuple[str, str]:
    return str(exc), ""


def test_seq_and_clocks() -> None:
    log = TraceLog()
    a = log.append(Event("x", "api", {}))
    b = log.append(Event("x", "db", {}))
    log.merge_clock("api", "db")
    c = log.append(Event("x", "api", {}))
    assert (a.seq, b.seq, c.seq) == (1, 2, 3)
    assert a.vclock == {"api": 1} and c.vclock == {"api": 2, "db": 1}


def test_select_uses_indexes_and_filters() -> None:
    log = filled()
    wal = log.select({"type": "wal"})
    assert len(wal) == 333 and all(e.type == "wal" for e in wal)
    both = log.select({"type": "wal", "service": "s1"})
    assert [int(e["i"]) for e in both] == [i for i in range(1000) if i % 3 == 2 and i % 5 == 1]
    assert log.select({"k": "odd", "type": "stdout"}) == [e for e in log.events if e.type == "stdout" and e.k == "odd"]
    assert len(log.select({"i": "9*"})) == 111  # 9, 90-99, 900-999
    assert log.select({"type": "nothing"}) == []


def test_field_index_follows_appends() -> None:
    log = filled(10)
    assert len(log.select({"k": "odd"})) == 5
    log.append(Event("syscall", "x", {"k": "odd"}))
    assert len(log.select({"k": "odd"})) == 6


def test_results_are_copies() -> None:
    log = filled(10)
    got = log.select({"type": "wal"})
    got.clear()
    assert len(log.select({"type": "wal"})) == 3


def test_monitor_sees_trace_up_to_its_event_and_first_violation_is_kept() -> None:
    log = TraceLog()
    lengths: list[int] = []

    def fn(e: Event) -> None:
        lengths.append(len(log.select({"type": "stdout"})))
        if int(e["stock"]) < 0:
            raise SpecFailure("stock went negative")

    stops: list[str] = []
    ms = MonitorSet(log, describe, lambda v: stops.append(v.message))
    ms.add(Monitor("stock", fn=fn, filters={"service": "inventory"}))
    for stock in ("3", "2", "-1", "-2"):
        log.append(Event("stdout", "inventory", {"stock": stock}))
        log.append(Event("stdout", "other", {"stock": "-5"}))
    assert lengths == [1, 3, 5, 7]
    assert ms.violation is not None and ms.violation.seq == 5 and ms.violation.message == "stock went negative"
    assert [e["seq"] for e in ms.violation.before] == [1, 2, 3, 4]
    assert stops == ["stock went negative"]
    assert len(ms.later_violations) == 1


def test_stateful_monitor_counts() -> None:
    log = TraceLog()
    ms = MonitorSet(log, describe)
    ms.add(
        Monitor(
            "max2", on=lambda e: e.type == "retry", state_init=0, update=lambda e, s: s + 1, check=lambda e, s: s <= 2
        )
    )
    for _ in range(2):
        log.append(Event("retry", "api", {}))
    assert ms.violation is None
    log.append(Event("retry", "api", {}))
    assert ms.violation is not None and "check returned False" in ms.violation.message


def test_concurrent_appends_keep_seq_dense() -> None:
    log = TraceLog()

    def writer(n: int) -> None:
        for i in range(2000):
            log.append(Event("syscall", f"w{n}", {"i": str(i)}))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.seq for e in log.events] == list(range(1, 8001))
    assert len(log.select({"service": "w2"})) == 2000
