"""Verdicts that must hold when specs misbehave: an expectation that says no, monitors that query the
trace while a test tears down, faults whose scope opens after output that came before it."""

from __future__ import annotations

import textwrap

from support import assert_passed, find_test, free_port, run_spec_text


def test_an_expectation_that_returns_false_fails_naming_itself(tmp_path) -> None:
    port = free_port()
    spec = textwrap.dedent(f"""
    pay = mock_service("pay", interface("main", "http", {port}), routes = {{"GET /x": status_only(503)}})
    def go():
        return pay.main.get(path = "/x")
    fault_scenario("says_no", scenario = go, expect = lambda r: r.status == 200)
    fault_scenario("says_yes", scenario = go, expect = lambda r: r.status == 503)
    fault_scenario("a_tuple_with_a_no", scenario = go, expect = lambda r: (assert_eq(r.status, 503), r.ok == False))
    def checks(r):
        assert_eq(r.status, 503)
    fault_scenario("returns_none", scenario = go, expect = checks)
    """)
    result = run_spec_text(tmp_path, spec, timeout=60)
    no = find_test(result, "test_says_no")
    assert no.outcome.value == "expectation_violated", no.reason
    assert no.reason == "expect returned False: lambda r: r.status == 200", no.reason
    assert no.location.endswith(":5"), no.location
    tuple_no = find_test(result, "test_a_tuple_with_a_no")
    assert tuple_no.outcome.value == "expectation_violated", tuple_no.reason
    assert_passed(find_test(result, "test_says_yes"))
    assert_passed(find_test(result, "test_returns_none"))


def test_a_monitor_that_queries_the_trace_runs_through_teardown(tmp_path) -> None:
    spec = textwrap.dedent("""
    idle = service("idle", "sleep", args = ["60"])
    def look_back(e):
        len(events(service = "idle"))
    def test_teardown_events_are_judged_too():
        monitor(look_back, service = "idle")
        assert_eq(len(events(type = "service_started", service = "idle")), 1)
    """)
    result = run_spec_text(tmp_path, spec, timeout=60)
    test = find_test(result, "test_teardown_events_are_judged_too")
    assert_passed(test)
    assert any(e.type == "service_exited" and e.service == "idle" for e in test.events)


def test_a_trace_records_its_calls_and_trace_stop_leaves_faults_alone(tmp_path) -> None:
    target = tmp_path / "out"
    loop = (
        f"import os, time\\nwhile True:\\n    fd = os.open({str(target)!r}, os.O_CREAT | os.O_WRONLY)\\n"
        "    os.write(fd, b'x')\\n    os.close(fd)\\n    time.sleep(0.005)"
    )
    spec = textwrap.dedent(f"""
    svc = service("svc", "python3", args = ["-c", "{loop}"])

    def written_while(applied, removed):
        return events(type = "syscall", service = "svc", syscall = "write",
                      where = lambda e: e.seq > applied and e.seq < removed)

    def test_trace():
        fault_start(svc, fsync = deny("EIO"))
        trace(svc, syscalls = ["write"], run = lambda: assert_eventually(
            type = "syscall", service = "svc", syscall = "write", path = "{target}", decision = "trace",
            timeout = "10s"))
        applied = events(type = "trace_applied", service = "svc")[0].seq
        removed = events(type = "trace_removed", service = "svc")[0]
        traced = written_while(applied, removed.seq)
        assert_true(len(traced) >= 1)
        assert_eq([e.decision for e in traced if e.decision != "trace"], [], "every call of the trace is traced")
        # calls made between the last barrier and the removal count too, and are recorded after it
        matched, fired = [int(part.split("=")[1]) for part in removed.write.split(" ")]
        assert_true(matched >= len(traced) and fired == matched, removed.write)
        trace_start(svc, syscalls = ["openat"])
        trace_stop(svc)
        assert_eq(len(events(type = "fault_removed", service = "svc")), 0, "trace_stop left fault_start alone")
        fault_stop(svc)
        assert_eq(len(events(type = "fault_removed", service = "svc")), 1)
    """)
    result = run_spec_text(tmp_path, spec, timeout=60)
    assert_passed(find_test(result, "test_trace"))
