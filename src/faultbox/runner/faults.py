"""The fault rules active in one test, scoped (DECISIONS §9, §13), whatever their backend.

Each fault()/fault_start()/assumption adds its own rules in a scope and removes exactly those when
the scope ends, so nested faults on one target add and remove only their own. A scope knows
nothing of syscalls or proxies: each rule goes to the backend of its kind (BACKENDS below maps a
rule class to a backend name; runner/fault_backends.py has the backends), which receives the full
current rule list of a target (newest first: the innermost scope decides) and returns what the
rules it no longer has did. A rule a backend cannot apply is refused when pushed; a rule that
matched nothing before removal is reported (FAULT_NOT_FIRED).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from faultbox.errors import Code
from faultbox.model.decisions import fault_key
from faultbox.model.fault import PARTITION_OP, ActionKind, SyscallRule
from faultbox.model.proxy import ProxyRule
from faultbox.model.result import Diagnostic, FaultRecord
from faultbox.model.scenario import Rule

Emit = Callable[[str, str, dict[str, str]], object]
Stats = Mapping[int, tuple[int, int, int]]  # rule id -> (matched, fired, unresolved paths)

_ids = itertools.count(1)


@dataclass(frozen=True)
class ActiveRule:
    """A rule installed in this test: its id, the key its random stream derives from, and the
    assumption it came from."""

    id: int
    rule: Rule
    key: str
    assumption: str = ""
    internal: bool = False  # the runner's own (a scheduled parallel()'s holds): never reported


class Backend(Protocol):
    """Where one kind of rule takes effect."""

    def target(self, rule: Rule) -> str:
        """The unit rules are installed on together (a service, an interface)."""

    def check(self, rules: Sequence[Rule]) -> None:
        """Raise for a rule that could never fire here: InfraError when the test's set-up cannot
        carry it, ArgError when the rule itself is the spec's mistake."""

    def sync(self, target: str, active: Sequence[ActiveRule]) -> Stats:
        """Install exactly `active` on `target`; return the stats of the rules removed."""


# Rule class -> backend name; a new kind of fault is a new row and a backend.
BACKENDS: dict[type, str] = {SyscallRule: "syscall", ProxyRule: "proxy"}


@dataclass(eq=False)
class Scope:
    rules: list[ActiveRule]
    imperative: bool = False
    removed: bool = False
    internal: bool = False


@dataclass
class FaultTable:
    test_name: str
    backends: Mapping[str, Backend]
    emit: Emit
    records: list[FaultRecord] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    by_id: dict[int, ActiveRule] = field(default_factory=dict)
    _scopes: list[Scope] = field(default_factory=list)
    _activations: dict[str, int] = field(default_factory=dict)
    # A fault the test's leaf leaves out (off.<key>, from shrinking) is not installed at all.
    leave_out: Callable[[str], bool] = lambda key: False

    def push(
        self, rules: Sequence[Rule], *, assumption: str = "", imperative: bool = False, internal: bool = False
    ) -> Scope:
        """Install rules in a scope of their own. An `internal` scope is the runner's, not the
        spec's: no fault_applied/fault_removed events, no fault records, no FAULT_NOT_FIRED."""
        if not internal:  # the runner's own rules are never a fault to leave out
            rules = self._without_left_out(rules)
        for name, group in _by_backend(rules).items():
            self.backends[name].check(group)
        active: list[ActiveRule] = []
        for rule in rules:
            label = rule.action.label if isinstance(rule, SyscallRule) else rule.fault.label
            base = f"{self.test_name}/{rule.service}/{rule.keyword}/{label}"
            n = self._activations[base] = self._activations.get(base, 0) + 1
            ar = ActiveRule(next(_ids), rule, f"{base}/{n}", assumption, internal)
            active.append(ar)
            self.by_id[ar.id] = ar
        scope = Scope(active, imperative, internal=internal)
        self._scopes.append(scope)
        try:
            self._sync(active)
        except BaseException:
            # Not installed after all: the scope must not linger to be removed (and reported) later.
            self._scopes.remove(scope)
            for ar in active:
                self.by_id.pop(ar.id, None)
            raise
        if internal:
            return scope
        for svc, svc_rules in _group(active).items():
            tracing = all(_is_trace(r.rule) for r in svc_rules)
            fields: dict[str, str] = {}
            for r in svc_rules:  # several rules on one keyword (a partition's ports): all of them
                fields[r.rule.keyword] = _joined(fields.get(r.rule.keyword), r.rule.describe())
            if assumption:
                fields["assumption"] = assumption
            self.emit("trace_applied" if tracing else "fault_applied", svc, fields)
        return scope

    def _without_left_out(self, rules: Sequence[Rule]) -> list[Rule]:
        kept = []
        for rule in rules:
            label = rule.action.label if isinstance(rule, SyscallRule) else rule.fault.label
            key = fault_key(rule.service, rule.keyword, label)
            if self.leave_out(key):
                what = rule.describe() if isinstance(rule, SyscallRule) else rule.fault.describe()
                self.emit("fault_off", rule.service, {rule.keyword: what, "fault": key})
            else:
                kept.append(rule)
        return kept

    def pop(self, scope: Scope) -> None:
        if scope.removed:
            return
        scope.removed = True
        if scope in self._scopes:
            self._scopes.remove(scope)
        stats = self._sync(scope.rules)
        for ar in scope.rules:
            if ar.internal:
                self.by_id.pop(ar.id, None)
        if scope.internal:
            return
        for svc, svc_rules in _group(scope.rules).items():
            tracing = all(_is_trace(r.rule) for r in svc_rules)
            fields: dict[str, str] = {}
            for ar in svc_rules:
                matched, fired, unresolved = stats.get(ar.id, (0, 0, 0))
                self._record(ar, matched, fired, unresolved)
                fields[ar.rule.keyword] = _joined(fields.get(ar.rule.keyword), f"matched={matched} fired={fired}")
            self.emit("trace_removed" if tracing else "fault_removed", svc, fields)
        self._check_partition(scope, stats)

    def _check_partition(self, scope: Scope, stats: Stats) -> None:
        """A partition is one fault made of several rules (a side, a port each): it is reported as
        not fired only when none of them refused anything."""
        legs = [ar for ar in scope.rules if isinstance(ar.rule, SyscallRule) and ar.rule.op == PARTITION_OP]
        if not legs or any(stats.get(ar.id, (0, 0, 0))[0] for ar in legs):
            return
        sides = " and ".join(dict.fromkeys(ar.rule.service for ar in legs))
        self.diagnostics.append(
            Diagnostic(
                "warning",
                Code.FAULT_NOT_FIRED.value,
                f"the partition of {sides} refused no connection while it was active: they may talk over "
                "connections opened before it (a partition refuses new connections only), or not at all",
                service=legs[0].rule.service,
                syscall="connect",
            )
        )
        self.emit("fault_not_fired", legs[0].rule.service, {"keyword": "connect", "decision": "partition"})

    def stop_target(self, service: str, interface: str | None = None, *, traces: bool = False) -> None:
        """fault_stop(): remove the imperative fault rules on a service; trace_stop() (`traces`):
        its imperative trace rules. Each leaves the other's alone. Given an interface, its own
        protocol rules go, and the service's syscall rules (an interface names its service for
        those, as it always has), but not the protocol rules of its other interfaces."""

        def mine(ar: ActiveRule) -> bool:
            if ar.rule.service != service or _is_trace(ar.rule) != traces:
                return False
            return interface is None or not isinstance(ar.rule, ProxyRule) or ar.rule.interface == interface

        for scope in [s for s in self._scopes if s.imperative]:
            taken = [r for r in scope.rules if mine(r)]
            if not taken:
                continue
            if len(taken) == len(scope.rules):
                self.pop(scope)
            else:
                scope.rules = [r for r in scope.rules if not mine(r)]
                self.pop(Scope(taken, True))

    def clear(self) -> None:
        """End of test: every remaining scope ends (innermost first)."""
        for scope in reversed(list(self._scopes)):
            try:
                self.pop(scope)
            except Exception:  # a backend that is gone: the other scopes still end and are recorded
                scope.removed = True

    # -- internals -----------------------------------------------------------------------------

    def _sync(self, changed: Sequence[ActiveRule]) -> dict[int, tuple[int, int, int]]:
        """Send each touched target its full current rule list (newest first); collect stats."""
        stats: dict[int, tuple[int, int, int]] = {}
        touched: dict[tuple[str, str], None] = {}
        for ar in changed:
            name = _backend_name(ar.rule)
            touched[(name, self.backends[name].target(ar.rule))] = None
        for name, target in touched:
            backend = self.backends[name]
            current = [
                r
                for scope in reversed(self._scopes)
                for r in scope.rules
                if _backend_name(r.rule) == name and backend.target(r.rule) == target
            ]
            stats.update(backend.sync(target, current))
        return stats

    def _record(self, ar: ActiveRule, matched: int, fired: int, unresolved: int) -> None:
        rule = ar.rule
        if isinstance(rule, ProxyRule):
            self._record_proxy(ar, rule, matched, fired)
            return
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
        self._not_fired(
            rule.service,
            rule.keyword,
            rule.action.decision(),
            f"{rule.keyword}={rule.action.decision()} on {rule.service} matched no syscall while it was "
            f"active{hint}; the scenario may not exercise it",
        )

    def _record_proxy(self, ar: ActiveRule, rule: ProxyRule, matched: int, fired: int) -> None:
        self.records.append(
            FaultRecord(
                service=rule.service,
                keyword=rule.interface,
                decision=rule.describe(),
                syscalls=[],
                label=rule.fault.label,
                matched=matched,
                fired=fired,
                assumption=ar.assumption,
                protocol=rule.protocol,
            )
        )
        if matched:
            return
        self._not_fired(
            rule.service,
            rule.interface,
            rule.describe(),
            f"{rule.describe()} on {rule.target} ({rule.protocol}) matched no request while it was active; "
            "the scenario may not send such a request through that interface",
        )

    def _not_fired(self, service: str, keyword: str, decision: str, message: str) -> None:
        self.diagnostics.append(
            Diagnostic("warning", Code.FAULT_NOT_FIRED.value, message, service=service, syscall=keyword)
        )
        self.emit("fault_not_fired", service, {"keyword": keyword, "decision": decision})


def _backend_name(rule: Rule) -> str:
    return BACKENDS[type(rule)]


def _by_backend(rules: Sequence[Rule]) -> dict[str, list[Rule]]:
    out: dict[str, list[Rule]] = {}
    for rule in rules:
        out.setdefault(_backend_name(rule), []).append(rule)
    return out


def _is_trace(rule: Rule) -> bool:
    return isinstance(rule, SyscallRule) and rule.action.kind is ActionKind.TRACE


def _joined(before: str | None, text: str) -> str:
    return text if before is None else f"{before}; {text}"


def _group(rules: Sequence[ActiveRule]) -> dict[str, list[ActiveRule]]:
    out: dict[str, list[ActiveRule]] = {}
    for r in rules:
        out.setdefault(r.rule.service, []).append(r)
    return out
