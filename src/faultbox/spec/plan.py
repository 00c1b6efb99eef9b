"""What a loaded spec will do, without starting anything: its services with the syscalls each one's
filter will intercept and the events each can produce, its tests and matrix cells with the faults
each applies, and static warnings about what can never happen (`faultbox plan`, `faultbox check`).

Everything here reads the Spec that load_spec() built; nothing runs spec code again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from faultbox._util.spell import did_you_mean
from faultbox.errors import HINTS, Code
from faultbox.model.fault import SyscallRule
from faultbox.model.filter import MOCK_PREFIX
from faultbox.model.monitor import Monitor
from faultbox.model.scenario import FaultAssumption, TestCase
from faultbox.model.service import Service

# Events every service can produce, whatever it is (lifecycle, steps, faults, its proxy).
_ALWAYS = frozenset(
    {
        "service_started", "service_ready", "service_exited", "step_send", "step_recv",
        "fault_applied", "fault_removed", "fault_not_fired", "trace_applied", "trace_removed",
        "proxy", "proxy_conn_open", "proxy_conn_close", "proxy_request", "proxy_warning", "proxy_started",
        "supervisor_failed", "proxy_failed", "source_error", "teardown_error",
    }
)  # fmt: skip
# Events only some services produce, and what makes them.
_WHY = {
    "syscall": "a service whose filter intercepts syscalls (a fault or trace on it somewhere in the spec)",
    "stdout": "a service with observe=[observe.stdout()]",
    "stderr": "a service with observe=[observe.stderr()]",
    "wal": "a postgres() server with wal=True",
    "topic": "a kafka() server",
    "mock": "a mock_service()",
    "service_reset": "a service with reuse=True",
}
EVENT_TYPES = _ALWAYS | frozenset(_WHY)


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning"
    code: Code
    message: str
    location: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"level": self.level, "code": self.code.value, "message": self.message, "suggestion": HINTS[self.code]}
        if self.location:
            out["location"] = self.location
        return out


def produces(svc: Service, intercepts: frozenset[str]) -> frozenset[str]:
    """The event types this service can produce in a run."""
    out = set(_ALWAYS)
    if intercepts:
        out.add("syscall")
    out.update(o.stream for o in svc.observe)
    if svc.is_mock:
        out.add("mock")
    if svc.reuse:
        out.add("service_reset")
    if svc.managed is not None:
        if svc.managed.kind == "postgres" and svc.managed.options.get("wal", True):
            out.add("wal")
        if svc.managed.kind == "kafka" and svc.managed.options.get("topics_observed", True):
            out.add("topic")
    return frozenset(out)


def monitors_of(spec: Any) -> Iterator[Monitor]:
    """Every monitor known at load: spec-wide ones, and those attached to assumptions and fault
    scenarios (a monitor() made inside a test body exists only when the test runs)."""
    seen: set[int] = set()
    sources: list[tuple[Monitor, ...]] = [tuple(spec.spec_monitors)]
    sources += [fa.monitors for fa in spec.assumptions.values()]
    sources += [t.fault_scenario.monitors for t in spec.tests if t.fault_scenario is not None]
    for group in sources:
        for m in group:
            if id(m) not in seen:
                seen.add(id(m))
                yield m


def static_findings(spec: Any) -> list[Finding]:
    findings = [f for m in monitors_of(spec) for f in _monitor_findings(spec, m)]
    findings += _filter_findings(spec)
    return findings


def _monitor_findings(spec: Any, m: Monitor) -> list[Finding]:
    where = str(m.location or "")
    kind = m.filters.get("type")
    service = m.filters.get("service")
    name = f'monitor "{m.name}"'
    if kind is not None and kind.startswith(MOCK_PREFIX):
        kind = "mock"
    if kind is not None and _literal(kind) and kind not in EVENT_TYPES:
        return [
            Finding(
                "warning",
                Code.MONITOR_NEVER_MATCHES,
                f'{name} watches type="{kind}", which no event has{did_you_mean(kind, sorted(EVENT_TYPES))}',
                where,
            )
        ]
    if service is not None and _literal(service) and service not in spec.services:
        return [
            Finding(
                "warning",
                Code.MONITOR_NEVER_MATCHES,
                f'{name} watches service="{service}", which the spec does not declare'
                f"{did_you_mean(service, list(spec.services))}",
                where,
            )
        ]
    if kind is None or not _literal(kind) or kind in _ALWAYS:
        return []
    candidates = [spec.services[service]] if service is not None and _literal(service) else spec.services.values()
    if any(kind in produces(s, spec.syscalls.get(s.name, frozenset())) for s in candidates):
        return []
    whom = (
        f'service "{service}" does not produce'
        if service is not None and _literal(service)
        else "no service of this spec produces"
    )
    return [
        Finding(
            "warning",
            Code.MONITOR_NEVER_MATCHES,
            f'{name} watches type="{kind}", but {whom} such events (they come from {_WHY[kind]})',
            where,
        )
    ]


def _filter_findings(spec: Any) -> list[Finding]:
    """A syscall rule known at load (an assumption's) outside its service's planned filter. Filters
    are planned from the spec's syntax tree and its assumptions, so this is only reached by a filter
    that a later change of the spec language planned too narrowly: `faultbox test` would refuse the
    rule (FAULT_NOT_FILTERABLE) when it applied it."""
    out = []
    for fa in spec.assumptions.values():
        for rule in fa.rules:
            if not isinstance(rule, SyscallRule):
                continue
            planned = spec.syscalls.get(rule.service, frozenset())
            missing = sorted(set(rule.syscalls) - planned) if "*" not in planned else []
            if missing:
                out.append(
                    Finding(
                        "warning",
                        Code.FAULT_NOT_FILTERABLE,
                        f'fault_assumption "{fa.name}": {rule.service} will not intercept {", ".join(missing)}',
                        str(fa.location or ""),
                    )
                )
    return out


def _literal(value: str) -> bool:
    return not any(c in value for c in "*?[")


def describe(spec: Any) -> dict[str, Any]:
    """The plan as data: services, tests (with their cells' faults), assumptions, findings."""
    services = []
    for svc in spec.services.values():
        intercepts = spec.syscalls.get(svc.name, frozenset())
        services.append(
            {
                "name": svc.name,
                "kind": "mock" if svc.is_mock else (svc.managed.kind if svc.managed else "process"),
                "interfaces": [{"name": i.name, "protocol": i.protocol, "port": i.port} for i in svc.interfaces],
                "depends_on": list(svc.depends_on),
                "intercepts": sorted(intercepts),
                "events": sorted(produces(svc, intercepts) - _ALWAYS),
                "reuse": svc.reuse,
            }
        )
    return {
        "schema_version": 1,
        "spec": spec.path,
        "services": services,
        "tests": [_test(t) for t in spec.tests],
        "assumptions": [_assumption(fa) for fa in spec.assumptions.values()],
        "monitors": [
            {"name": m.name, "filters": dict(m.filters), "location": str(m.location or "")} for m in monitors_of(spec)
        ],
        "findings": [f.to_dict() for f in static_findings(spec)],
    }


def _test(t: TestCase) -> dict[str, Any]:
    out: dict[str, Any] = {"name": t.name, "location": str(t.location or "")}
    fs = t.fault_scenario
    if fs is None:
        out["kind"] = "scenario" if t.probe else "def"
        return out
    out["kind"] = "fault_matrix" if fs.matrix is not None else "fault_scenario"
    if fs.matrix is not None:
        out["cell"] = {"scenario": fs.matrix[0], "fault": fs.matrix[1]}
    out["assumptions"] = [fa.name for fa in fs.assumptions]
    out["faults"] = [_rule(r) for fa in fs.assumptions for r in fa.rules]
    out["monitors"] = [m.name for m in fs.monitors]
    if fs.timeout is not None:
        out["timeout_s"] = fs.timeout
    return out


def _assumption(fa: FaultAssumption) -> dict[str, Any]:
    return {
        "name": fa.name,
        "location": str(fa.location or ""),
        "faults": [_rule(r) for r in fa.rules],
        "monitors": [m.name for m in fa.monitors],
    }


def _rule(rule: Any) -> str:
    if isinstance(rule, SyscallRule):
        return f"{rule.service}.{rule.keyword}={rule.action.decision()}"
    return f"{rule.target}:{rule.describe()}"


__all__ = ["EVENT_TYPES", "Finding", "describe", "produces", "static_findings"]
