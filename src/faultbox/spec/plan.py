"""What a loaded spec will do, without starting anything: its services with the syscalls each one's
filter will intercept and the events each can produce, its tests and matrix cells with the faults
each applies, and static warnings about what can never happen (`faultbox plan`, `faultbox check`).

Everything here reads the Spec that load_spec() built; nothing runs spec code again."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from faultbox._util.spell import did_you_mean
from faultbox.errors import HINTS, Code
from faultbox.model.fault import SyscallRule
from faultbox.model.filter import MOCK_PREFIX
from faultbox.model.monitor import Monitor
from faultbox.model.scenario import Expectation, FaultAssumption, TestCase
from faultbox.model.service import Service
from faultbox.spec.loader import STDLIB_DIR

# Events every service can produce, whatever it is (lifecycle, steps, faults, its proxy).
_ALWAYS = frozenset(
    {
        "service_started", "service_ready", "service_exited", "step_send", "step_recv",
        "fault_applied", "fault_removed", "fault_not_fired", "trace_applied", "trace_removed",
        "proxy", "proxy_conn_open", "proxy_conn_close", "proxy_request", "proxy_warning", "proxy_started",
        "supervisor_failed", "proxy_failed", "source_error", "teardown_error", "choice", "fault_off",
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
    level: str  # "error" | "warning" | "info"
    code: Code
    message: str
    location: str = ""
    hint: str = ""  # better than the code's own fix, when the finding knows one

    def to_dict(self) -> dict[str, str]:
        out = {
            "level": self.level,
            "code": self.code.value,
            "message": self.message,
            "suggestion": self.hint or HINTS[self.code],
        }
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


# -- where this spec meets a deliberate difference from the reference (docs/decisions.md) --------

VERDICTS = "Verdicts: stricter where the reference lets a test pass"
EVENTS = "Events"
SERVICES = "Services and faults"
NOT_YET = "Not in faultbox yet"
# kind -> the section of docs/decisions.md that explains it
DIFFERENCES = {
    "expect": VERDICTS,
    "mock_type": EVENTS,
    "reuse": SERVICES,
    "openapi_validate": SERVICES,
    "interleavings": SERVICES,
}


def reference_differences(spec: Any) -> list[Finding]:
    """One `info` finding per kind of deliberate difference from the reference that this spec meets
    (`faultbox check`), at its first place in the spec: a spec written for the reference runs here
    unchanged, but these parts of it behave differently. Read from the loaded model where it keeps
    what matters, from the syntax trees of the spec's own files (the stdlib's are not the user's)
    otherwise."""
    # kind -> place -> (sort key, message); a place counts once (a matrix's cells share an expect)
    found: dict[str, dict[str, tuple[tuple[int, str, int, int], str]]] = {}

    def add(kind: str, file: str, line: int, col: int, message: str) -> None:
        where = f"{file}:{line}:{col}" if col else f"{file}:{line}"
        key = (0 if file == spec.path else 1, file, line, col)
        found.setdefault(kind, {}).setdefault(where, (key, message))

    for t in spec.tests:
        fs = t.fault_scenario
        code = getattr(fs.expect, "__code__", None) if fs is not None else None
        if fs is None or fs.expect is None or isinstance(fs.expect, Expectation) or code is None:
            continue
        if _in_stdlib(code.co_filename):
            continue
        add(
            "expect",
            code.co_filename,
            code.co_firstlineno,
            0,
            f"{t.name}: its expect= is a function of the spec; one that returns False (or a tuple holding "
            "a False) fails the test here, where the reference passes it (None still passes)",
        )
    for svc in spec.services.values():
        if svc.reuse and svc.location is not None:
            add(
                "reuse",
                svc.location.file,
                svc.location.line,
                svc.location.col,
                f'service "{svc.name}" has reuse=True: a kept service runs reset after seed on a fresh start '
                "too, and for PostgreSQL and Redis its data after reset is compared with a fresh start's "
                "(a leak fails the test); the reference runs only seed and trusts reset",
            )
    for module in spec.modules.values():
        if _in_stdlib(module.path):
            continue
        for node in ast.walk(module.checked.tree):
            for kind, message, at in _syntax_differences(node):
                add(kind, module.path, at.lineno, at.col_offset + 1, message)
    out = []
    for kind, section in DIFFERENCES.items():
        if kind not in found:
            continue
        where, (_, message) = min(found[kind].items(), key=lambda item: item[1][0])
        count = len(found[kind])
        more = f" ({count - 1} more place{'s' if count > 2 else ''} alike)" if count > 1 else ""
        out.append(
            Finding(
                "info",
                Code.DIFFERS_FROM_REFERENCE,
                message + more,
                where,
                f'nothing to change if this is what you meant; see docs/decisions.md, "{section}"',
            )
        )
    return out


def _syntax_differences(node: ast.AST) -> Iterator[tuple[str, str, ast.expr]]:
    """(kind, message, where) for each difference a node of a spec's syntax tree shows."""
    if isinstance(node, ast.Call):
        fname = node.func.id if isinstance(node.func, ast.Name) else None
        keywords = {kw.arg: kw.value for kw in node.keywords if kw.arg}
        kind = keywords.get("type")
        if isinstance(kind, ast.Constant) and isinstance(kind.value, str) and kind.value.startswith(MOCK_PREFIX):
            yield "mock_type", _mock_type_message(kind.value), kind
        leaves = keywords.get("interleavings")
        if (
            fname == "parallel"
            and leaves is not None
            and not (isinstance(leaves, ast.Constant) and leaves.value in (1, "1"))
        ):
            yield (
                "interleavings",
                "parallel(..., interleavings=) schedules the services' socket sends, one service's at a time: "
                "a number N is N PCT schedules (random priorities that change), not only the reference's fixed "
                "orders, and reads, file writes and logs are never held",
                leaves,
            )
        if fname == "mock_service" and "openapi" in keywords and "validate" not in keywords:
            yield (
                "openapi_validate",
                "a mock_service with openapi= validates every request against the document by default "
                '(validate="strict"): a request the document does not allow gets a 400; validate="off" '
                "answers it as the reference does",
                node,
            )
    elif isinstance(node, ast.Dict):
        for key, value in zip(node.keys, node.values, strict=True):
            if (
                isinstance(key, ast.Constant)
                and key.value == "type"
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
                and value.value.startswith(MOCK_PREFIX)
            ):
                yield "mock_type", _mock_type_message(value.value), value


def _mock_type_message(kind: str) -> str:
    op = kind[len(MOCK_PREFIX) :]
    return (
        f'type="{kind}" (the reference\'s spelling): mock requests are "mock" events here (e.type is "mock", '
        f'e.op is "{op}"); the filter matches them, as type="mock", op="{op}" does'
    )


def _in_stdlib(path: str) -> bool:
    return os.path.realpath(path).startswith(str(STDLIB_DIR) + os.sep)


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
    if t.temporal is not None:  # test(): its own timeout and properties
        out["kind"] = "test"
        out["timeout"] = t.temporal.timeout
        out["expect"] = [p.where for p in t.temporal.expect]
        if t.temporal.terminate_when is not None:
            out["terminate_when"] = t.temporal.terminate_when.where
        return out
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


__all__ = ["EVENT_TYPES", "Finding", "describe", "produces", "reference_differences", "static_findings"]
