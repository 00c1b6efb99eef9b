"""The normalized trace: run-specific values out, the same input the same text, lanes in order."""

from __future__ import annotations

import json
from typing import Any

from faultbox.model.event import Event
from faultbox.model.result import Outcome, RunRecord, RunResult, TestResult
from faultbox.trace.normalize import Scrubber, dumps, is_normalized, normalize_run, normalize_test


def ev(type: str, service: str, seq: int, ts: float = 0.0, data: Any = None, **fields: str) -> Event:
    e = Event(type, service, fields, data, ts=ts or 1_700_000_000.0 + seq, mirrored=data is None)
    e.seq = seq
    e.vclock = {service: seq} if service else {}
    return e


def run_of(pid: int, port: int, conn: int, workdir: str, ts: float) -> RunResult:
    """One test's trace as two runs of one seed produce it: the same story, other pids, ports,
    connection ids, times and run directory; and the racy interleaving of two sources."""
    events = [
        ev("proxy_started", "api", 1, ts, listen=f"127.0.0.1:{port}", target="127.0.0.1:8080", interface="main"),
        ev("service_started", "api", 2, ts, pid=str(pid), argv="python3 app.py"),
        ev("service_ready", "api", 3, ts),
        ev("fault_applied", "api", 4, ts, fsync="deny(EIO)"),
        ev("step_send", "api", 5, ts, method="post", path="/orders"),
        ev("proxy_conn_open", "api", 6, ts, conn_id=str(conn), client=f"127.0.0.1:{port + 7}"),
        ev("syscall", "api", 7, ts, syscall="write", decision="allow", pid=str(pid), path="socket:[991]"),
        ev("syscall", "api", 8, ts, syscall="write", decision="allow", pid=str(pid)),
        ev(
            "syscall",
            "api",
            9,
            ts,
            syscall="fsync",
            decision="deny(EIO)",
            pid=str(pid),
            tid=str(pid + 1),
            path=f"{workdir}/api/data.wal",
        ),
        ev("stdout", "api", 10, ts, line=f"2025-01-0{1 + pid % 3}T10:00:00Z pid {pid} wrote order in 12ms"),
        ev("step_recv", "api", 11, ts, status="503", duration_ms=str(pid % 50)),
        ev("proxy_conn_close", "api", 12, ts, conn_id=str(conn), bytes_s2c=str(pid % 7), duration_ms="3"),
        ev("teardown_error", "", 13, ts, error="x"),
    ]
    test = TestResult(
        name="test_order",
        outcome=Outcome.FAILED,
        reason=f"assert_eq failed: 503 != 200 after {pid % 9 + 1}.5s",
        seed=5,
        events=events,
    )
    return RunResult(spec="/tmp/pytest-x/spec.star", seed=5, started=ts, tests=[test])


def test_two_runs_of_one_seed_normalize_to_the_same_text() -> None:
    a = run_of(pid=4242, port=40001, conn=3, workdir="/tmp/faultbox-run-0a1b2c3d4e5f", ts=1_700_000_000.5)
    b = run_of(pid=5151, port=51234, conn=9, workdir="/tmp/faultbox-run-ffeeddccbbaa", ts=1_760_000_000.25)
    # the same story with the output line entering the trace before the syscalls (another lane)
    b.tests[0].events.insert(6, b.tests[0].events.pop(9))
    assert dumps(normalize_run(a)) == dumps(normalize_run(b))


def test_what_is_taken_out_and_what_stays() -> None:
    doc = normalize_run(run_of(pid=4242, port=40001, conn=3, workdir="/tmp/faultbox-run-0a1b2c", ts=1.0))
    assert is_normalized(doc) and doc["spec"] == "spec.star" and doc["seed"] == 5
    [test] = doc["tests"]
    assert test["reason"] == "assert_eq failed: 503 != 200 after <duration>"
    lanes = {(lane["service"], lane["lane"]): lane["events"] for lane in test["lanes"]}
    assert list(lanes) == [
        ("api", "lifecycle"),
        ("api", "faults"),
        ("api", "steps"),
        ("api", "syscalls"),
        ("api", "output"),
        ("api", "proxy"),
        ("api", "proxy c1"),  # a lane per connection: connections interleave
        ("-", "teardown_error"),
    ]
    [syscall] = lanes["api", "syscalls"]  # writes to a socket and without a path are incidental
    assert syscall == {
        "type": "syscall",
        "fields": {
            "syscall": "fsync",
            "decision": "deny(EIO)",
            "pid": "<pid>",
            "tid": "<pid>",
            "path": "<workdir>/api/data.wal",
        },
    }
    [line] = lanes["api", "output"]
    assert line["fields"]["line"] == "<time> pid <pid> wrote order in <duration>"
    [started] = lanes["api", "proxy"]
    opened, closed = lanes["api", "proxy c1"]
    assert started["fields"]["listen"] == "127.0.0.1:<port>"
    assert started["fields"]["target"] == "127.0.0.1:8080"  # a spec's own port stays
    assert opened["fields"] == {"conn_id": "c1", "client": "127.0.0.1:<port>"}
    assert closed["fields"] == {"conn_id": "c1", "bytes_s2c": "<bytes>", "duration_ms": "<duration>"}
    assert lanes["api", "steps"][1]["fields"] == {"status": "503", "duration_ms": "<duration>"}
    assert lanes["api", "lifecycle"][0]["fields"] == {"pid": "<pid>", "argv": "python3 app.py"}
    # faultbox's own fields keep their durations: delay(500ms) is part of the spec
    assert Scrubber().text("delay(500ms)", False) == "delay(500ms)"
    assert Scrubber().text("took 500ms", True) == "took <duration>"


def test_text_scrubbing() -> None:
    s = Scrubber(pids=["31337", "7"], ports=["45678"])
    assert s.text("worker 31337 and 7 on :45678, not 313370", True) == "worker <pid> and 7 on :<port>, not 313370"
    assert s.text("at 12:01:02.123 and 1765432100.5", True) == "at <time> and <time>"
    assert s.text("at 12:01:02.123", False) == "at 12:01:02.123"
    assert s.text("id 123e4567-e89b-12d3-a456-426614174000 in /tmp/tmpab12cd34/x", False) == "id <uuid> in <tmp>/x"
    assert s.text("write to pipe:[12345] and socket:[9]", False) == "write to pipe and socket"
    assert s.text("[::1]:40000 and 10.0.0.1:5432", False) == "[::1]:<port> and 10.0.0.1:5432"


def test_native_data_keys_and_conn_ids() -> None:
    data = {"ts": "2025-01-01", "order": {"id": 7, "created_at": 1.5, "elapsed_ms": 4}, "items": ["a"]}
    test = TestResult(
        "test_x",
        Outcome.PASSED,
        events=[
            ev("mock", "pay", 1, data=data, conn_id="17", op="charge"),
            ev("mock", "pay", 2, conn_id="12"),
            ev("mock", "pay", 3, conn_id="17"),
            ev("wal", "db", 4, lsn="0/16B3748", xid="771", table="orders"),
        ],
    )
    lanes = {(lane["service"], lane["lane"]): lane["events"] for lane in normalize_test(test)["lanes"]}
    assert list(lanes) == [("db", "wal"), ("pay", "mock c1"), ("pay", "mock c2")]
    first, again = lanes["pay", "mock c1"]
    assert first["data"] == {
        "ts": "<time>",
        "order": {"id": 7, "created_at": "<time>", "elapsed_ms": "<duration>"},
        "items": ["a"],
    }
    assert first["fields"]["conn_id"] == again["fields"]["conn_id"] == "c1"
    assert lanes["db", "wal"][0]["fields"] == {"lsn": "<lsn>", "xid": "<xid>", "table": "orders"}


def test_incidental_calls_and_timing_fields_go() -> None:
    events = [
        ev("syscall", "api", 1, syscall="connect", decision="allow", addr="unix:/var/run/nscd/socket"),
        ev("syscall", "api", 2, syscall="connect", decision="allow", addr="127.0.0.1:5432", path="socket:[4]"),
        ev("syscall", "api", 3, syscall="write", decision="delay(1s)", path="pipe:[7]", late_ms="2.5"),
        ev("syscall", "api", 4, syscall="read", decision="allow", path="/dev/null"),
    ]
    [lane] = normalize_test(TestResult("test_x", Outcome.PASSED, events=events))["lanes"]
    assert [e["fields"] for e in lane["events"]] == [
        {"syscall": "connect", "decision": "allow", "addr": "127.0.0.1:5432", "path": "socket"},
        {"syscall": "write", "decision": "delay(1s)", "path": "pipe"},
    ]


def test_a_schedule_step_is_the_same_whether_pct_chose_it_or_a_replay_forced_it() -> None:
    def lane(mode: str) -> list[dict[str, object]]:
        events = [ev("schedule", "web", 1, site="c.star:9", step="1", mode=mode)]
        [only] = normalize_test(TestResult("test_x", Outcome.FAILED, events=events))["lanes"]
        return [e["fields"] for e in only["events"]]

    assert lane("pct") == lane("replay") == [{"site": "c.star:9", "step": "1"}]


def test_runs_say_which_run_the_trace_is() -> None:
    test = TestResult("test_x", Outcome.FAILED, seed=99)
    test.runs = [RunRecord(1, 5, Outcome.PASSED), RunRecord(2, 99, Outcome.FAILED)]
    assert normalize_test(test)["run"] == 2
    doc = normalize_run(RunResult("s.star", 5, 0.0, tests=[test], runs=3))
    assert doc["runs"] == 3


def test_the_file_is_json_with_one_event_per_line() -> None:
    text = dumps(normalize_run(run_of(pid=4242, port=40001, conn=3, workdir="/tmp/faultbox-run-0a", ts=1.0)))
    doc = json.loads(text)
    assert doc["tests"][0]["name"] == "test_order"
    assert text.endswith("}\n")
    assert '          {"type": "fault_applied", "fields": {"fsync": "deny(EIO)"}}' in text.splitlines()
    empty = dumps(normalize_run(RunResult("s.star", 1, 0.0)))
    assert json.loads(empty)["tests"] == []
