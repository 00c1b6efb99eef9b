"""Fault scopes with fake backends: nesting, per-backend routing, stats and FAULT_NOT_FIRED."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from faultbox.errors import Code, InfraError
from faultbox.model.fault import Action, ActionKind, SyscallRule
from faultbox.model.proxy import ProxyAction, ProxyFault, ProxyRule
from faultbox.model.scenario import Rule
from faultbox.runner.faults import ActiveRule, FaultTable
from faultbox.runner.wiring import UnknownProxy, rewrite, rewrite_env


class FakeBackend:
    """Records what each target holds; every installed rule 'fired' `fires` times."""

    def __init__(self, fires: int = 1, refuse: str = "") -> None:
        self.installed: dict[str, list[int]] = {}
        self.fires = fires
        self.refuse = refuse

    def target(self, rule: Rule) -> str:
        return rule.target if isinstance(rule, ProxyRule) else rule.service

    def check(self, rules: Sequence[Rule]) -> None:
        if self.refuse:
            raise InfraError(Code.FAULT_NOT_FILTERABLE, self.refuse)

    def sync(self, target: str, active: Sequence[ActiveRule]) -> dict[int, tuple[int, int, int]]:
        before = set(self.installed.get(target, []))
        self.installed[target] = [ar.id for ar in active]
        gone = before - set(self.installed[target])
        return {rid: (self.fires, self.fires, 0) for rid in gone}


def _sys(service: str = "db") -> SyscallRule:
    return SyscallRule(service, "fsync", ("fsync",), Action(ActionKind.DENY, errno="EIO"))


def _proxy(path: str = "/x") -> ProxyRule:
    return ProxyRule("api", "main", "http", ProxyFault(ProxyAction.ERROR, (("path", path),), status=503))


def _table(syscall: FakeBackend, proxy: FakeBackend) -> tuple[FaultTable, list[tuple[str, str, dict[str, str]]]]:
    events: list[tuple[str, str, dict[str, str]]] = []
    table = FaultTable("t", {"syscall": syscall, "proxy": proxy}, lambda t, s, f: events.append((t, s, f)))
    return table, events


def test_rules_go_to_their_backend_and_nested_scopes_remove_only_their_own() -> None:
    sb, pb = FakeBackend(), FakeBackend()
    table, events = _table(sb, pb)
    outer = table.push([_sys(), _proxy("/a")])
    inner = table.push([_proxy("/b")])
    assert len(sb.installed["db"]) == 1
    assert len(pb.installed["api.main"]) == 2
    newest_first = pb.installed["api.main"]
    assert newest_first[0] == inner.rules[0].id
    table.pop(inner)
    assert pb.installed["api.main"] == [outer.rules[1].id]
    table.pop(outer)
    assert pb.installed["api.main"] == [] and sb.installed["db"] == []
    kinds = [(r.protocol or "syscall", r.keyword, r.fired) for r in table.records]
    assert kinds == [("http", "main", 1), ("syscall", "fsync", 1), ("http", "main", 1)]
    applied = [f for t, s, f in events if t == "fault_applied" and s == "api"]
    assert applied[0] == {"main": "error(path=/a, status=503)"}


def test_a_protocol_rule_that_matched_nothing_is_reported() -> None:
    table, events = _table(FakeBackend(), FakeBackend(fires=0))
    table.pop(table.push([_proxy()]))
    (diag,) = table.diagnostics
    assert diag.code == "FAULT_NOT_FIRED" and "matched no request" in diag.message
    assert ("fault_not_fired", "api") in [(t, s) for t, s, _ in events]


def test_stop_target_removes_one_interface_or_a_whole_service() -> None:
    sb, pb = FakeBackend(), FakeBackend()
    table, _ = _table(sb, pb)
    other = ProxyRule("api", "admin", "http", ProxyFault(ProxyAction.DROP))
    table.push([_proxy(), other], imperative=True)
    table.stop_target("api", "main")
    assert pb.installed["api.main"] == [] and len(pb.installed["api.admin"]) == 1, "only that interface's"
    write = SyscallRule("api", "write", ("write",), Action(ActionKind.DENY, errno="EIO"))
    table.push([write], imperative=True)
    table.stop_target("api", "admin")
    assert pb.installed["api.admin"] == [] and sb.installed["api"] == [], "an interface names its service's syscalls"
    table.push([_proxy(), other, write], imperative=True)
    table.stop_target("api")
    assert pb.installed["api.main"] == pb.installed["api.admin"] == sb.installed["api"] == []


def test_a_backend_refusal_installs_nothing() -> None:
    sb, pb = FakeBackend(), FakeBackend(refuse="no proxy")
    table, _ = _table(sb, pb)
    with pytest.raises(InfraError, match="no proxy"):
        table.push([_sys(), _proxy()])
    assert sb.installed == {} and pb.installed == {}


def test_env_rewriting_names_proxies_but_never_a_services_own_ports() -> None:
    aliases = {5432: "127.0.0.1:40001", 80: "127.0.0.1:40002"}
    assert rewrite("postgresql://u@127.0.0.1:5432/db", aliases) == "postgresql://u@127.0.0.1:40001/db"
    assert rewrite("localhost:5432,localhost:54321", aliases) == "127.0.0.1:40001,localhost:54321"
    assert rewrite("http://10.0.0.1:80/", aliases) == "http://10.0.0.1:80/", "only local addresses"
    assert rewrite("127.0.0.1:8080", aliases) == "127.0.0.1:8080"
    env = rewrite_env({"DB": "127.0.0.1:5432", "SELF": "127.0.0.1:80"}, aliases, [80])
    assert env == {"DB": "127.0.0.1:40001", "SELF": "127.0.0.1:80"}


def test_proxy_placeholders_resolve_or_say_which_proxy_is_missing() -> None:
    proxied = {("my_db", "main"): ("127.0.0.1", 40001)}
    env = {"A": "PLAINTEXT://__FB_PROXY_ADDR_my_db__main__", "P": "__FB_PROXY_PORT_my_db__main__"}
    assert rewrite_env(env, {}, [], proxied) == {"A": "PLAINTEXT://127.0.0.1:40001", "P": "40001"}
    with pytest.raises(UnknownProxy, match=r"env B names the proxy of cache\.main"):
        rewrite_env({"B": "__FB_PROXY_HOST_cache__main__"}, {}, [], proxied)
