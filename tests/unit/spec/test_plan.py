"""faultbox plan's model of a spec: what each service intercepts and produces, the faults of each
cell, and warnings for monitors that can never see an event."""

from __future__ import annotations

from pathlib import Path

from faultbox.errors import Code
from faultbox.spec import load_spec
from faultbox.spec.plan import describe, static_findings

BASE = """
db = service("db", "/bin/sleep", interface("main", "tcp", 19001), args = ["60"])
api = service("api", "/bin/sleep", interface("main", "tcp", 19002), args = ["60"],
    observe = [observe.stdout()], depends_on = [db])
slow = fault_assumption("slow", target = db, write = delay("5ms"))

def create():
    api.main.send(data = "x")

fault_matrix(scenarios = [create], faults = [slow], default_expect = lambda r: None)
"""


def _load(tmp_path: Path, extra: str = "") -> object:
    path = tmp_path / "spec.star"
    path.write_text(BASE + extra)
    return load_spec(str(path))


def test_services_tests_and_cells(tmp_path: Path) -> None:
    plan = describe(_load(tmp_path))
    services = {s["name"]: s for s in plan["services"]}
    assert "write" in services["db"]["intercepts"] and "writev" in services["db"]["intercepts"]
    assert services["db"]["events"] == ["syscall"]
    assert services["api"]["intercepts"] == [] and services["api"]["events"] == ["stdout"]
    assert services["api"]["depends_on"] == ["db"]
    (cell,) = plan["tests"]
    assert cell["name"] == "test_matrix_create_slow" and cell["kind"] == "fault_matrix"
    assert cell["cell"] == {"scenario": "create", "fault": "slow"}
    assert cell["faults"] == ["db.write=delay(5ms)"]
    assert plan["findings"] == []


def _codes(tmp_path: Path, monitor: str) -> list[tuple[Code, str]]:
    attach = 'fault_scenario("watched", scenario = create, faults = slow, monitors = [m])'
    spec = _load(tmp_path, f"\ndef watch(e):\n    pass\n\n{monitor}\n{attach}\n")
    return [(f.code, f.message) for f in static_findings(spec)]


def test_a_monitor_on_events_nothing_produces_is_a_warning(tmp_path: Path) -> None:
    assert _codes(tmp_path, 'm = monitor(watch, type = "syscall", service = "db")') == []
    assert _codes(tmp_path, 'm = monitor(watch, type = "stdout")') == []  # api observes stdout
    [(code, message)] = _codes(tmp_path, 'm = monitor(watch, type = "syscall", service = "api")')
    assert code is Code.MONITOR_NEVER_MATCHES and 'service "api" does not produce' in message
    [(code, message)] = _codes(tmp_path, 'm = monitor(watch, type = "wal")')
    assert "no service of this spec produces" in message and "postgres()" in message
    [(code, message)] = _codes(tmp_path, 'm = monitor(watch, type = "stderr", service = "api")')
    assert "observe.stderr()" in message


def test_an_unattached_monitor_is_not_judged(tmp_path: Path) -> None:
    spec = _load(tmp_path, '\ndef watch(e):\n    pass\n\nm = monitor(watch, type = "wal")\n')
    assert static_findings(spec) == []  # declared at the top level, it does nothing until attached


def test_a_monitor_on_a_type_or_service_that_does_not_exist(tmp_path: Path) -> None:
    [(_, message)] = _codes(tmp_path, 'm = monitor(watch, type = "sycall")')
    assert 'type="sycall", which no event has' in message and "syscall" in message
    [(_, message)] = _codes(tmp_path, 'm = monitor(watch, service = "apii")')
    assert 'service="apii", which the spec does not declare' in message and "api" in message
    assert _codes(tmp_path, 'm = monitor(watch, service = "a*")') == []  # a glob: not judged
    assert _codes(tmp_path, 'm = monitor(watch, type = "mock.POST /x")') != []  # no mock here
