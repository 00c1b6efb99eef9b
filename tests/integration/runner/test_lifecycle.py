"""Services start in dependency order, wait for health (raced against their exit), and stop after
every test: SIGTERM, then SIGKILL after the grace, whole process group (issue: topology)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from support import descendants_alive, free_port, svc_decl


def test_dependency_order_fresh_processes_and_clean_stop(run, tmp_path: Path) -> None:
    p1, p2 = free_port(), free_port()
    spec = (
        svc_decl("db", p1, env=f'"PIDFILE": "{tmp_path}/db.pids", "CHILDREN": "2"')
        + svc_decl("api", p2, extra=", depends_on = [db]")
        + """
def pids():
    return db.main.send(data = "PIDS")

def test_a():
    assert_eq(api.main.send(data = "PING"), "PONG")
    print("pids", pids())

def test_b():
    print("pids", pids())
"""
    )
    res = run(spec)
    assert res.result.exit_code == 0, res.explain()
    a, b = res.test("a"), res.test("b")
    started = [e.service for e in a.events if e.type == "service_started"]
    assert started == ["db", "api"]
    ready = [e.seq for e in a.events if e.type == "service_ready"]
    assert len(ready) == 2 and ready[0] < [e.seq for e in a.events if e.type == "service_started"][1]
    pids_a = [int(p) for p in a.details["printed"][0].split()[1:]]
    pids_b = [int(p) for p in b.details["printed"][0].split()[1:]]
    assert set(pids_a).isdisjoint(pids_b), "each test gets fresh processes"
    # The children ignore SIGTERM: they must have been SIGKILLed with the group.
    assert descendants_alive(pids_a + pids_b) == []
    stopped = [e for e in a.events if e.type == "service_exited"]
    assert [e.service for e in stopped] == ["api", "db"]  # reverse order
    assert all(e.fields["reason"] == "stopped" for e in stopped)


def test_sigterm_then_sigkill_after_grace(run) -> None:
    port = free_port()
    spec = (
        svc_decl("stubborn", port, extra=', stop_timeout = "300ms"', env='"IGNORE_TERM": "1"')
        + """
def test_x():
    assert_eq(stubborn.main.send(data = "PING"), "PONG")
"""
    )
    res = run(spec)
    t = res.test("x")
    exited = next(e for e in t.events if e.type == "service_exited")
    assert exited.fields["signal"] == "SIGKILL"
    assert t.outcome.value == "passed"


def test_crash_during_start_fails_at_once_with_stderr(run) -> None:
    port = free_port()
    spec = (
        svc_decl("broken", port, env='"CRASH": "1"').replace(
            'tcp("127.0.0.1', 'tcp(timeout = "120s", addr = "127.0.0.1'
        )
        + """
def test_x():
    pass
"""
    )
    started = time.monotonic()
    res = run(spec)
    t = res.test("x")
    assert time.monotonic() - started < 60, "the healthcheck races the process's exit (not its 120 s timeout)"
    assert t.outcome.value == "failed"
    assert "broken exited with code 3 while starting" in t.reason
    assert "cannot open configuration file" in t.reason


def test_healthcheck_that_never_passes(run) -> None:
    port = free_port()
    spec = (
        svc_decl("mute", port, env='"NO_LISTEN": "1"').replace(
            'tcp("127.0.0.1', 'tcp(timeout = "1s", addr = "127.0.0.1'
        )
        + "\ndef test_x():\n    pass\n"
    )
    res = run(spec)
    t = res.test("x")
    assert t.outcome.value == "failed"
    assert "HEALTHCHECK_TIMEOUT" in t.reason and "not ready within 1s" in t.reason
    assert f"127.0.0.1:{port}" in t.reason


def test_port_already_taken(run) -> None:
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    try:
        res = run(svc_decl("late", port) + "\ndef test_x():\n    pass\n")
    finally:
        holder.close()
    t = res.test("x")
    assert t.outcome.value == "failed"
    assert f"port {port} is already in use" in t.reason and "PORT_IN_USE" in t.reason
    assert f"pid {os.getpid()}" in t.reason or "python" in t.reason


def test_per_test_timeout_is_inconclusive(run) -> None:
    res = run('def test_slow():\n    sleep("120s")\n', timeout=0.5)
    t = res.test("slow")
    assert t.outcome.value == "inconclusive" and "timed out" in t.reason
    assert t.duration_ms < 60_000, "the sleep was cut at the 0.5 s deadline, not waited out"
    assert res.result.exit_code == 3


def test_a_stuck_computation_is_interrupted(run) -> None:
    spin = "def test_spin():\n    for i in range(10000000):\n        for j in range(10000000):\n            pass\n"
    res = run(spin, timeout=0.3)
    assert res.test("spin").outcome.value == "inconclusive"
