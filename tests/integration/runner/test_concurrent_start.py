"""--concurrent-start: services that do not depend on each other start at the same time (two that
each listen only once the other has started prove it), a dependent starts after both are ready,
the services outlive the threads that started them, and one that fails to start stops the others'
waits and leaves nothing running."""

from __future__ import annotations

import sys
from pathlib import Path

from faultbox.runner.run import RunOptions, run_spec
from faultbox.spec import load_spec
from support import FIXTURES, descendants_alive, free_port, svc_decl


def _peer(name: str, marks: Path, fixed: Path, peers: int) -> str:
    port = free_port()
    return (
        f'{name} = service("{name}", "{sys.executable}", interface("main", "tcp", {port}), '
        f'args = ["{FIXTURES}/rendezvous.py"], env = {{"MARKS": "{marks}", "PEERS": "{peers}", '
        f'"FIXED": "{fixed}", "WAIT": "120", "PORT": "{port}"}}, '
        f'healthcheck = tcp("127.0.0.1:{port}", timeout = "120s"))\n'
    )


def _run(spec_text: str, tmp_path: Path, concurrent: bool):
    path = tmp_path / "spec.star"
    path.write_text(spec_text.replace("@PYTHON@", sys.executable).replace("@FIXTURES@", str(FIXTURES)))
    return run_spec(load_spec(str(path)), RunOptions(seed=1, timeout=120, concurrent_start=concurrent))


def test_independent_services_start_together_and_dependents_after(tmp_path: Path, marks: Path) -> None:
    fixed = tmp_path / "pids"
    spec = (
        _peer("a", marks, fixed, 2)
        + _peer("b", marks, fixed, 2)
        + svc_decl("c", free_port(), ", depends_on = [a, b]")
        + """
def test_all_up():
    assert_eq(a.main.send(data = "n").strip(), "2")
    assert_eq(b.main.send(data = "n").strip(), "2")
    assert_eq(c.main.send(data = "PING"), "PONG")
    ready = [e.seq for e in events(type = "service_ready") if e.service in ("a", "b")]
    started_c = first(type = "service_started", service = "c")
    assert_true(started_c.seq > max(ready), "c started before a and b were ready")
"""
    )
    result = _run(spec, tmp_path, concurrent=True)
    test = result.tests[0]
    assert test.outcome.value == "passed", test.reason


def test_one_that_fails_to_start_ends_the_others_waits(tmp_path: Path, marks: Path) -> None:
    fixed = tmp_path / "pids"
    spec = (
        _peer("a", marks, fixed, 3)  # waits for a third start that never comes (120 s)
        + svc_decl("b", free_port(), env='"CRASH": "1"')
        + svc_decl("c", free_port(), ", depends_on = [a, b]")
        + 'def test_never():\n    fail("the body ran")\n'
    )
    result = _run(spec, tmp_path, concurrent=True)
    test = result.tests[0]
    assert test.outcome.value == "failed", test.reason
    assert "b exited with code 3 while starting" in test.reason, test.reason
    assert test.timings["start_ms"] < 60_000, test.timings  # a's 120 s health wait was given up
    started = [e.service for e in test.events if e.type == "service_started"]
    assert "c" not in started and sorted(started) == ["a", "b"]
    pids = [int(p) for p in fixed.read_text().split()]
    assert pids and descendants_alive(pids) == []
