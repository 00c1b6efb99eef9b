"""Which syscalls each service's seccomp filter intercepts, decided from the spec's AST
(DECISIONS §14), not by a text scan.

Every call of fault/fault_start/fault_all/fault_assumption/trace/trace_start in every loaded module
contributes its syscall keywords (families and named ops expanded) to the services its target names;
a partition(a, b, ...) or partition_start(a, b) call contributes connect to both; a
parallel(..., interleavings=) other than 1 contributes the sends a schedule holds
(SCHEDULED_SYSCALLS) to every service that runs a process.
A target that cannot be resolved statically (a function parameter, say) contributes to every
service: over-intercepting costs speed, missing costs a fault that cannot fire. A rule that still
falls outside a filter is refused at apply time with FAULT_NOT_FILTERABLE.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from typing import Any

from faultbox.model.fault import SyscallRule
from faultbox.model.scenario import FaultAssumption
from faultbox.model.service import Service
from faultbox.model.syscalls import FAMILIES, SCHEDULED_SYSCALLS, expand, known_syscalls
from faultbox.spec.compile import Module
from faultbox.spec.values import InterfaceRef, ServiceValue

# builtin -> its own keyword parameters (everything else in a call is a syscall or op keyword)
_FAULT_CALLS: dict[str, frozenset[str]] = {
    "fault": frozenset({"run", "target"}),
    "fault_all": frozenset({"run", "targets"}),
    "fault_start": frozenset({"target"}),
    "fault_assumption": frozenset({"name", "target", "description", "monitors", "faults", "rules"}),
}
_TRACE_CALLS = frozenset({"trace", "trace_start"})

ALL = "*"


def plan_filters(
    modules: Iterable[Module], services: Mapping[str, Service], assumptions: Iterable[FaultAssumption]
) -> dict[str, frozenset[str]]:
    wanted: dict[str, set[str]] = {name: set() for name in services}
    for module in modules:
        for call in ast.walk(module.checked.tree):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
                _visit_call(call, module.globals, services, wanted)
    # Assumptions ran at load time: their rules are exact.
    for fa in assumptions:
        for rule in fa.rules:
            if isinstance(rule, SyscallRule):  # protocol rules need no filter
                wanted.setdefault(rule.service, set()).update(rule.syscalls)
    return {name: frozenset(s) for name, s in wanted.items()}


def _visit_call(
    call: ast.Call, globals_: Mapping[str, Any], services: Mapping[str, Service], wanted: dict[str, set[str]]
) -> None:
    fname = call.func.id  # type: ignore[attr-defined]
    if fname in _FAULT_CALLS:
        own = _FAULT_CALLS[fname]
        keywords = [kw.arg for kw in call.keywords if kw.arg and kw.arg not in own]
        if not keywords:
            return
        target = _target_expr(call, fname)
        for svc_name in _resolve(target, globals_, services):
            svc = services[svc_name]
            wanted[svc_name].update(_syscalls_for(keywords, svc))
    elif fname in ("partition", "partition_start"):  # connect() refusals on both sides
        sides = [*call.args[:2], *(kw.value for kw in call.keywords if kw.arg in ("a", "b"))]
        for side in sides:
            for svc_name in _resolve(side, globals_, services):
                wanted[svc_name].update(expand("connect"))
    elif fname == "parallel" and _explores(call):
        for svc_name, svc in services.items():
            if not svc.is_mock:
                for name in SCHEDULED_SYSCALLS:
                    wanted[svc_name].update(expand(name))
    elif fname in _TRACE_CALLS:
        names = _string_list(next((kw.value for kw in call.keywords if kw.arg == "syscalls"), None))
        target = call.args[0] if call.args else None
        for svc_name in _resolve(target, globals_, services):
            for name in names:
                wanted[svc_name].update(expand(name))


def _explores(call: ast.Call) -> bool:
    """parallel(..., interleavings=X) with X not the literal 1 or "1": its leaves are scheduled."""
    for kw in call.keywords:
        if kw.arg == "interleavings":
            return not (isinstance(kw.value, ast.Constant) and kw.value.value in (1, "1"))
    return False


def _target_expr(call: ast.Call, fname: str) -> ast.AST | None:
    for kw in call.keywords:
        if kw.arg in ("target", "targets"):
            return kw.value
    if fname == "fault_assumption":
        return None  # its target is keyword-only
    return call.args[0] if call.args else None


def _syscalls_for(keywords: list[str], svc: Service) -> set[str]:
    out: set[str] = set()
    known = known_syscalls()
    for key in keywords:
        op = svc.ops.get(key)
        if op is not None:
            for sc in op.syscalls:
                out.update(expand(sc))
        elif key in known or key in FAMILIES:
            out.update(expand(key))
    return out


def _resolve(expr: ast.AST | None, globals_: Mapping[str, Any], services: Mapping[str, Service]) -> list[str]:
    """Service names an expression denotes, or every service when it cannot be told statically."""
    if expr is None:
        return list(services)
    if isinstance(expr, (ast.List, ast.Tuple)):
        out: list[str] = []
        for elt in expr.elts:
            out.extend(_resolve(elt, globals_, services))
        return out
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str) and expr.value in services:
        return [expr.value]
    value = _static_value(expr, globals_)
    names = _names_of(value)
    if names is not None:
        return [n for n in names if n in services]
    return list(services)


def _static_value(expr: ast.AST, globals_: Mapping[str, Any]) -> Any:
    if isinstance(expr, ast.Name):
        return globals_.get(expr.id)
    if isinstance(expr, ast.Attribute):
        base = _static_value(expr.value, globals_)
        if isinstance(base, ServiceValue):
            iface = base.model.interface(expr.attr)
            return base if iface is not None else None
    return None


def _names_of(value: Any) -> list[str] | None:
    if isinstance(value, ServiceValue):
        return [value.name]
    if isinstance(value, InterfaceRef):
        return [value.service]
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for v in value:
            names = _names_of(v)
            if names is None:
                return None
            out.extend(names)
        return out
    return None


def _string_list(expr: ast.AST | None) -> list[str]:
    if isinstance(expr, (ast.List, ast.Tuple)):
        return [e.value for e in expr.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return []
