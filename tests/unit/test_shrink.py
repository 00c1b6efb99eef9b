"""Shrinking's candidates: each one step smaller, smallest changes first; the only fault is never
left out; partitions are not candidates."""

from __future__ import annotations

from faultbox.model.decisions import Decisions, Schedule
from faultbox.model.result import FaultRecord
from faultbox.runner.shrink import candidates, describe, fired_faults, size


def rec(service: str, keyword: str, fired: int, **kw: str) -> FaultRecord:
    return FaultRecord(service, keyword, "deny(EIO)", [keyword], fired=fired, matched=fired, **kw)


def test_fired_faults_skip_silent_ones_partitions_and_repeats() -> None:
    records = [
        rec("db", "fsync", 2),
        rec("db", "write", 0),
        rec("api", "connect", 3, op="partition"),
        rec("db", "fsync", 1),
        rec("db", "write", 1, label="slow"),
    ]
    assert fired_faults(records) == ["db:fsync", "db:write[slow]"]


def test_candidates_are_each_one_step_smaller() -> None:
    d = Decisions(choices={"mode": 2}, fires={"w": "101"}, orders={"s:1": Schedule("pct", seed=4, depth=3)})
    faults = ["db:fsync", "db:write"]
    texts = [c.to_text() for c in candidates(d, faults)]
    assert texts == [
        "choose.mode=2;fires.w=101;order.s:1=pct:4:3;off.db:fsync=1",
        "choose.mode=2;fires.w=101;order.s:1=pct:4:3;off.db:write=1",
        "choose.mode=2;fires.w=001;order.s:1=pct:4:3",
        "choose.mode=2;fires.w=100;order.s:1=pct:4:3",
        "choose.mode=2;fires.w=101;order.s:1=pct:4:2",
        "choose.mode=0;fires.w=101;order.s:1=pct:4:3",
    ]
    for c in candidates(d, faults):
        assert size(c, faults) < size(d, faults)
    assert describe(d, Decisions(choices={"mode": 0}, fires={"w": "001"}, off=["db:fsync"], orders=d.orders)) == (
        "without db:fsync; w fires 1 of 3 (was 2); mode: first option"
    )


def test_the_last_fault_is_never_left_out() -> None:
    assert list(candidates(Decisions(off=["a:x"]), ["a:x", "a:y"])) == []
    assert list(candidates(Decisions(), ["a:x"])) == []
