"""The syscall rules active in one test, scoped (DECISIONS §9, §13).

Each fault()/fault_start()/assumption adds its own rules in a scope and removes exactly those when
the scope ends, so nested faults on one service add and remove only their own. Rules reach the
supervisor newest first (the innermost scope decides). A rule on a syscall outside the service's
filter is refused at apply time (FAULT_NOT_FILTERABLE); a rule that matched nothing before removal
is reported (FAULT_NOT_FIRED).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from faultbox.engine.client import SupervisorClient, SupervisorError
from faultbox.engine.rules import ActiveRule
from faultbox.errors import Code, InfraError
from faultbox.model.fault import PARTITION_OP, ActionKind, SyscallRule
from faultbox.model.result import Diagnostic, FaultRecord

Emit = Callable[[str, str, dict[str, str]], object]

_ids = itertools.count(1)


@dataclass(eq=False)
class Scope:
    rules: list[ActiveRule]
    imperative: bool = False
    removed: bool = False


@dataclass
class FaultTable:
    test_name: str
    run_seed: int
    supervisor: SupervisorClient | None
    filters: Mapping[str, frozenset[str]]  # service -> syscalls its filter intercepts
    svc_ids: dict[str, int]  # running service -> supervisor id (filtered services only)
    emit: Emit
    records: list[FaultRecord] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    by_id: dict[int, ActiveRule] = field(default_factory=dict)
    _scopes: list[Scope] = field(default_factory=list)
    _activations: dict[str, int] = field(default_factory=dict)

    def push(self, rules: Sequence[SyscallRule], *, assumption: str = "", imperative: bool = False) -> Scope:
        self._check(rules)
        active: list[ActiveRule] = []
        for rule in rules:
            base = f"{self.test_name}/{rule.service}/{rule.keyword}/{rule.action.label}"
            n = self._activations[base] = self._activations.get(base, 0) + 1
            ar = ActiveRule(next(_ids), rule, f"{base}/{n}", assumption)
            active.append(ar)
            self.by_id[ar.id] = ar
        scope = Scope(active, imperative)
        self._scopes.append(scope)
        self._sync(self._services(active))
        for svc, svc_rules in _group(active).items():
            kind = (
                "trace_applied" if all(r.rule.action.kind is ActionKind.TRACE for r in svc_rules) else "fault_applied"
            )
            fields: dict[str, str] = {}
            for r in svc_rules:  # several rules on one keyword (a partition's ports): all of them
                fields[r.rule.keyword] = _joined(fields.get(r.rule.keyword), r.rule.describe())
            if assumption:
                fields["assumption"] = assumption
            self.emit(kind, svc, fields)
        return scope

    def pop(self, scope: Scope) -> None:
        if scope.removed:
            return
        scope.removed = True
        if scope in self._scopes:
            self._scopes.remove(scope)
        stats = self._sync(self._services(scope.rules))
        for svc, svc_rules in _group(scope.rules).items():
            tracing = all(r.rule.action.kind is ActionKind.TRACE for r in svc_rules)
            fields: dict[str, str] = {}
            for ar in svc_rules:
                matched, fired, unresolved = stats.get(ar.id, (0, 0, 0))
                self._record(ar, matched, fired, unresolved)
                fields[ar.rule.keyword] = _joined(fields.get(ar.rule.keyword), f"matched={matched} fired={fired}")
            self.emit("trace_removed" if tracing else "fault_removed", svc, fields)
        self._check_partition(scope, stats)

    def _check_partition(self, scope: Scope, stats: Mapping[int, tuple[int, int, int]]) -> None:
        """A partition is one fault made of several rules (a side, a port each): it is reported as
        not fired only when none of them refused anything."""
        legs = [ar for ar in scope.rules if ar.rule.op == PARTITION_OP]
        if not legs or any(stats.get(ar.id, (0, 0, 0))[0] for ar in legs):
            return
        sides = " and ".join(dict.fromkeys(ar.rule.service for ar in legs))
        self.diagnostics.append(
            Diagnostic(
                "warning",
                "FAULT_NOT_FIRED",
                f"the partition of {sides} refused no connection while it was active: they may talk over "
                "connections opened before it (a partition refuses new connections only), or not at all",
                service=legs[0].rule.service,
                syscall="connect",
            )
        )
        self.emit("fault_not_fired", legs[0].rule.service, {"keyword": "connect", "decision": "partition"})

    def stop_service(self, service: str) -> None:
        """fault_stop()/trace_stop(): remove the imperative rules on a service."""
        for scope in [s for s in self._scopes if s.imperative]:
            mine = [r for r in scope.rules if r.rule.service == service]
            if not mine:
                continue
            if len(mine) == len(scope.rules):
                self.pop(scope)
            else:
                scope.rules = [r for r in scope.rules if r.rule.service != service]
                self.pop(Scope(mine, True))

    def clear(self) -> None:
        """End of test: every remaining scope ends (innermost first)."""
        for scope in reversed(list(self._scopes)):
            try:
                self.pop(scope)
            except (SupervisorError, InfraError):
                scope.removed = True

    # -- internals -----------------------------------------------------------------------------

    def _check(self, rules: Sequence[SyscallRule]) -> None:
        for rule in rules:
            have = self.filters.get(rule.service, frozenset())
            missing = [s for s in rule.syscalls if s not in have]
            if rule.service not in self.svc_ids or missing:
                covered = ", ".join(sorted(have)) or "nothing (it runs without a filter)"
                raise InfraError(
                    Code.FAULT_NOT_FILTERABLE,
                    f"fault on {rule.service}: {rule.keyword}={rule.action.decision()} needs "
                    f"[{', '.join(rule.syscalls)}] intercepted, but {rule.service}'s filter covers {covered}",
                    f"write the fault with a literal keyword, e.g. fault({rule.service}, {rule.keyword}=...), "
                    f"or fault_assumption(target={rule.service}, {rule.keyword}=...), so the service "
                    f"starts with {rule.keyword} in its filter",
                )

    def _services(self, rules: Sequence[ActiveRule]) -> list[str]:
        return list(dict.fromkeys(r.rule.service for r in rules))

    def _sync(self, services: Sequence[str]) -> dict[int, tuple[int, int, int]]:
        """Send each service's full current rule list (newest first); collect removed rules' stats."""
        stats: dict[int, tuple[int, int, int]] = {}
        if self.supervisor is None:
            return stats
        for svc in services:
            svc_id = self.svc_ids.get(svc)
            if svc_id is None:
                continue
            current = [r for scope in reversed(self._scopes) for r in scope.rules if r.rule.service == svc]
            stats.update(self.supervisor.set_rules(svc_id, [r.wire(self.run_seed) for r in current]))
        return stats

    def _record(self, ar: ActiveRule, matched: int, fired: int, unresolved: int) -> None:
        rule = ar.rule
        self.records.append(
            FaultRecord(
                service=rule.service,
                keyword=rule.keyword,
                decision=rule.action.decision(),
                syscalls=list(rule.syscalls),
                label=rule.action.label,
                matched=matched,
                fired=fired,
                unresolved_paths=unresolved,
                assumption=ar.assumption,
                op=rule.op,
            )
        )
        if rule.action.kind in (ActionKind.TRACE, ActionKind.ALLOW) or matched or rule.op == PARTITION_OP:
            return
        hint = ""
        if unresolved:
            hint = f" ({unresolved} calls had a path that could not be resolved)"
        elif rule.path:
            hint = f" (no call touched a path matching {rule.path})"
        self.diagnostics.append(
            Diagnostic(
                "warning",
                "FAULT_NOT_FIRED",
                f"{rule.keyword}={rule.action.decision()} on {rule.service} matched no syscall while it was "
                f"active{hint}; the scenario may not exercise it",
                service=rule.service,
                syscall=rule.keyword,
            )
        )
        self.emit("fault_not_fired", rule.service, {"keyword": rule.keyword, "decision": rule.action.decision()})


def _joined(before: str | None, text: str) -> str:
    return text if before is None else f"{before}; {text}"


def _group(rules: Sequence[ActiveRule]) -> dict[str, list[ActiveRule]]:
    out: dict[str, list[ActiveRule]] = {}
    for r in rules:
        out.setdefault(r.rule.service, []).append(r)
    return out
