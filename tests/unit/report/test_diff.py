"""faultbox diff, as pure functions: matching tests, the first differing event of each lane with its
context, outcomes, and reading either kind of file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from faultbox.model.event import Event
from faultbox.model.result import Outcome, RunResult, TestResult
from faultbox.report import json_results
from faultbox.report.diff import describe, diff, load, render
from faultbox.report.json_results import ResultsError
from faultbox.trace.normalize import dumps, normalize_run


def lane(service: str, name: str, *events: dict[str, Any]) -> dict[str, Any]:
    return {"service": service, "lane": name, "events": list(events)}


def call(n: int, decision: str = "allow") -> dict[str, Any]:
    return {"type": "syscall", "fields": {"syscall": "write", "decision": decision, "path": f"/data/{n}"}}


def doc(*tests: dict[str, Any], seed: int = 1) -> dict[str, Any]:
    return {"format": "faultbox-normalized-trace", "version": 1, "spec": "s.star", "seed": seed, "tests": list(tests)}


def case(name: str, *lanes: dict[str, Any], outcome: str = "passed", reason: str = "") -> dict[str, Any]:
    return {"name": name, "outcome": outcome, "reason": reason, "lanes": list(lanes)}


def test_identical_traces_are_the_same_whatever_the_seeds() -> None:
    a = doc(case("test_a", lane("api", "syscalls", call(1), call(2))), seed=1)
    b = doc(case("test_a", lane("api", "syscalls", call(1), call(2))), seed=2)
    d = diff(a, b)
    assert d.same and d.counts()["same"] == 1
    lines = render(d)
    assert lines[0] == "A: A  (s.star, seed 1)" and lines[1] == "B: B  (s.star, seed 2)"
    assert lines[-1] == "traces are the same: 1 tests, 1 same, 0 different"


def test_the_first_differing_event_with_context() -> None:
    events = [call(i) for i in range(1, 9)]
    other = [*events[:5], call(6, "deny(EIO)"), *events[6:]]
    a = doc(case("test_a", lane("api", "steps", {"type": "step_send"}), lane("api", "syscalls", *events)))
    b = doc(case("test_a", lane("api", "steps", {"type": "step_send"}), lane("api", "syscalls", *other)))
    d = diff(a, b, "a.norm", "b.norm")
    assert not d.same
    [t] = d.tests
    assert t.status == "different"
    [ld] = t.lanes
    assert (ld.service, ld.lane, ld.index) == ("api", "syscalls", 5)
    assert ld.before == events[2:5] and ld.a == events[5:8] and ld.b == other[5:8]
    text = "\n".join(render(d))
    assert "api syscalls: first difference at event 6 (A has 8, B has 8)" in text
    assert "           3  syscall decision=allow path=/data/3 syscall=write" in text
    assert "      -    6  syscall decision=allow path=/data/6 syscall=write" in text
    assert "      +    6  syscall decision=deny(EIO) path=/data/6 syscall=write" in text
    assert text.endswith("traces differ: 1 tests, 0 same, 1 different")


def test_a_lane_that_ends_early_outcomes_reasons_and_missing_tests() -> None:
    a = doc(
        case("test_a", lane("api", "syscalls", call(1), call(2)), outcome="passed"),
        case("test_only_a"),
        case("test_same"),
    )
    b = doc(
        case(
            "test_a",
            lane("api", "syscalls", call(1)),
            lane("db", "wal", {"type": "wal"}),
            outcome="failed",
            reason="boom\nmore",
        ),
        case("test_same"),
        case("test_only_b"),
    )
    d = diff(a, b)
    assert [(t.name, t.status) for t in d.tests] == [
        ("test_a", "different"),
        ("test_only_a", "only in A"),
        ("test_same", "same"),
        ("test_only_b", "only in B"),
    ]
    first, second = d.tests[0].lanes
    assert (first.index, first.a_len, first.b_len, first.b) == (1, 2, 1, [])
    assert (second.service, second.lane, second.index, second.a_len) == ("db", "wal", 0, 0)
    text = "\n".join(render(d))
    assert "    outcome: A passed, B failed" in text
    assert "    reason A: (none)\n    reason B: boom" in text
    assert "      +       (no more events)" in text
    assert "≠ test_only_a: only in A" in text and "= test_same: same" in text
    assert text.endswith("traces differ: 4 tests, 1 same, 1 different, 1 only in A, 1 only in B")


def test_many_lanes_are_counted_past_the_limit() -> None:
    a = doc(case("test_a", *(lane(f"s{i}", "syscalls", call(1)) for i in range(6))))
    b = doc(case("test_a", *(lane(f"s{i}", "syscalls", call(2)) for i in range(6))))
    text = "\n".join(render(diff(a, b), max_lanes=4))
    assert "… and 2 more lanes differ: s4 syscalls, s5 syscalls" in text


def test_describe_is_one_bounded_line() -> None:
    ev = {"type": "stdout", "fields": {"line": "a\nb", "z": "x" * 100}, "data": {"k": [1, 2]}}
    text = describe(ev)
    assert text.startswith("stdout line=a\\nb z=xxx") and "\n" not in text and len(text) <= 160
    assert describe({"type": "mock", "data": {"k": 1}}) == 'mock data={"k": 1}'


def _result(reply: str) -> RunResult:
    e = Event("step_recv", "api", {"reply": reply, "duration_ms": "3"}, ts=1.0)
    e.seq = 1
    return RunResult("s.star", 3, 0.0, tests=[TestResult("test_a", Outcome.PASSED, seed=3, events=[e])])


def test_load_reads_normalized_traces_and_results(tmp_path: Path) -> None:
    norm = tmp_path / "a.norm"
    norm.write_text(dumps(normalize_run(_result("ok"))))
    results = tmp_path / "b.json"
    json_results.write(_result("ok"), str(results))
    assert load(str(norm)) == load(str(results))
    json_results.write(_result("no"), str(results))
    assert not diff(load(str(norm)), load(str(results))).same
    other = tmp_path / "c.json"
    other.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ResultsError, match="neither a normalized trace"):
        load(str(other))
    with pytest.raises(ResultsError, match="No such file"):
        load(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ResultsError, match="not JSON"):
        load(str(tmp_path / "bad.json"))
