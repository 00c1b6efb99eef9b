"""The backends fault scopes hand their rules to (runner/faults.py): the seccomp supervisor for
syscall rules, the interfaces' proxies for protocol rules."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from faultbox.engine.client import SupervisorClient
from faultbox.engine.rules import ActiveRule as SupervisorRule
from faultbox.errors import Code, InfraError
from faultbox.model.fault import SyscallRule
from faultbox.model.proxy import ProxyRule, check_fault_for
from faultbox.model.scenario import Rule
from faultbox.proxy.hub import check_fault
from faultbox.proxy.remote import ProxyWorkerError, RemoteListener
from faultbox.proxy.rules import Installed
from faultbox.runner.faults import ActiveRule, Stats
from faultbox.spec.args import ArgError


class SyscallBackend:
    """Syscall rules, per service, to the supervisor. A rule on a syscall outside the service's
    filter is refused (FAULT_NOT_FILTERABLE): it could never fire."""

    def __init__(
        self,
        supervisor: SupervisorClient | None,
        filters: Mapping[str, frozenset[str]],
        svc_ids: Callable[[], Mapping[str, int]],
        run_seed: int,
        addr_aliases: Callable[[], Mapping[str, str]] = dict,
        fires_for: Callable[[SyscallRule], str] = lambda rule: "",
    ) -> None:
        self.supervisor = supervisor
        self.fires_for = fires_for  # a max_fires= rule's fire bits in this leaf ("" to draw)
        self.filters = filters
        self.svc_ids = svc_ids
        self.run_seed = run_seed
        self.addr_aliases = addr_aliases  # port -> its proxy's port (runner/wiring.py)

    def target(self, rule: Rule) -> str:
        return rule.service

    def check(self, rules: Sequence[Rule]) -> None:
        ids = self.svc_ids()
        for rule in rules:
            assert isinstance(rule, SyscallRule)
            have = self.filters.get(rule.service, frozenset())
            missing = [s for s in rule.syscalls if s not in have]
            if rule.service not in ids or missing:
                covered = ", ".join(sorted(have)) or "nothing (it runs without a filter)"
                raise InfraError(
                    Code.FAULT_NOT_FILTERABLE,
                    f"fault on {rule.service}: {rule.keyword}={rule.action.decision()} needs "
                    f"[{', '.join(rule.syscalls)}] intercepted, but {rule.service}'s filter covers {covered}",
                    f"write the fault with a literal keyword, e.g. fault({rule.service}, {rule.keyword}=...), "
                    f"or fault_assumption(target={rule.service}, {rule.keyword}=...), so the service "
                    f"starts with {rule.keyword} in its filter",
                )

    def sync(self, target: str, active: Sequence[ActiveRule]) -> Stats:
        svc_id = self.svc_ids().get(target)
        if self.supervisor is None or svc_id is None:
            return {}
        wire = []
        aliases = self.addr_aliases()
        for ar in active:
            assert isinstance(ar.rule, SyscallRule)
            fires = self.fires_for(ar.rule) if ar.rule.action.max_fires else ""
            wire.append(SupervisorRule(ar.id, ar.rule, ar.key, ar.assumption).wire(self.run_seed, aliases, fires))
        return self.supervisor.set_rules(svc_id, wire)


class ProxyBackend:
    """Protocol rules, per interface, to that interface's proxy. A rule on an interface with no
    running proxy, or that its protocol cannot apply, is refused."""

    def __init__(self, listeners: Callable[[], Mapping[str, RemoteListener]]) -> None:
        self.listeners = listeners

    def target(self, rule: Rule) -> str:
        assert isinstance(rule, ProxyRule)
        return rule.target

    def check(self, rules: Sequence[Rule]) -> None:
        running = self.listeners()
        for rule in rules:
            assert isinstance(rule, ProxyRule)
            problem = check_fault_for(rule.fault, rule.protocol, rule.target) or check_fault(rule.protocol, rule.fault)
            if problem is not None:  # the spec's mistake, reported at the fault() call that made it
                raise ArgError(problem)
            if rule.target not in running:
                raise InfraError(
                    Code.FAULT_NOT_FILTERABLE,
                    f"{rule.describe()} on {rule.target}: that interface has no proxy in this test "
                    f"(the service {rule.service} is not running)",
                    "fault an interface of a service the test starts",
                )

    def sync(self, target: str, active: Sequence[ActiveRule]) -> Stats:
        listener = self.listeners().get(target)
        if listener is None:
            return {}
        installed = []
        for ar in active:
            assert isinstance(ar.rule, ProxyRule)
            installed.append(Installed(ar.id, ar.rule, ar.key, ar.assumption))
        try:
            return listener.set_rules(installed)
        except ProxyWorkerError as exc:
            raise InfraError(Code.PROXY_FAILED, f"{target}: the proxy could not take its rules: {exc}") from None
