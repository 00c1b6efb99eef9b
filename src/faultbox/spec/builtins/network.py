"""partition(a, b, run=fn): two services cannot reach each other while `run` runs
(partition_start/partition_stop: from one call to the other).

Each leg is a connect() refusal (ECONNREFUSED) on the calling service, narrowed to the other
service's ports, so everything else both services do still works. As in the reference's
documented behaviour, only new connections are refused: a connection opened before the partition
stays up (the runner warns when a partition refused nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from faultbox.model.fault import PARTITION_OP, Action, ActionKind, SyscallRule
from faultbox.model.service import Service
from faultbox.spec import host as host_mod
from faultbox.spec.args import ArgError, check_arity
from faultbox.spec.builtins import builtin
from faultbox.spec.builtins.faults import build_rules, services_of
from faultbox.spec.registry import SpecBuilder

_DIRECTIONS = ("both", "a_to_b", "b_to_a")


@builtin("partition", "a: any, b: any, *, run: callable, direction: str = 'both'")
def partition(builder: SpecBuilder, a: Any, b: Any, run: Callable[[], Any], direction: str) -> Any:
    check_arity(run, 0, "partition(): run=", "no arguments")
    _, rules = _partition_rules(a, b, direction, "partition()")
    return host_mod.require("partition()").apply_faults(rules, run)


@builtin("partition_start", "a: any, b: any, *, direction: str = 'both'")
def partition_start(builder: SpecBuilder, a: Any, b: Any, direction: str) -> None:
    """The imperative form: until partition_stop(a, b) or the end of the test."""
    pair, rules = _partition_rules(a, b, direction, "partition_start()")
    host_mod.require("partition_start()").start_partition(pair, rules)


@builtin("partition_stop", "a: any, b: any")
def partition_stop(builder: SpecBuilder, a: Any, b: Any) -> None:
    pair = frozenset((_service_of(a, "partition_stop(): a").name, _service_of(b, "partition_stop(): b").name))
    host_mod.require("partition_stop()").stop_partition(pair)


def _partition_rules(a: Any, b: Any, direction: str, what: str) -> tuple[frozenset[str], list[SyscallRule]]:
    if direction not in _DIRECTIONS:
        raise ArgError(
            f'{what}: direction="{direction}" is not one of {", ".join(_DIRECTIONS)}',
            'a_to_b refuses only a\'s connections to b; "both" (the default) refuses both ways',
        )
    svc_a, svc_b = _service_of(a, f"{what}: a"), _service_of(b, f"{what}: b")
    if svc_a.name == svc_b.name:
        raise ArgError(f"{what}: both sides are {svc_a.name}; name two different services")
    rules: list[SyscallRule] = []
    if direction in ("both", "a_to_b"):
        rules += _refuse(svc_a, svc_b, what)
    if direction in ("both", "b_to_a"):
        rules += _refuse(svc_b, svc_a, what)
    if not rules:
        raise ArgError(
            f"{what}: {svc_a.name} and {svc_b.name} are mocks, or the direction leaves only a mock's side: "
            "a mock connects to nobody, so there is nothing to cut",
            "partition a service from a mock (the service's connections to it are refused)",
        )
    return frozenset((svc_a.name, svc_b.name)), rules


def _service_of(value: Any, what: str) -> Service:
    services = services_of(value, what)
    if len(services) != 1:
        raise ArgError(f"{what} must be one service, got {len(services)}")
    return services[0]


def _refuse(caller: Service, peer: Service, what: str) -> list[SyscallRule]:
    """connect() from `caller` to any interface of `peer` fails with ECONNREFUSED."""
    if caller.is_mock:
        return []  # a mock only answers: it connects to nobody
    if not peer.interfaces:
        raise ArgError(
            f"{what}: {peer.name} has no interfaces, so {caller.name} has nothing to be cut from",
            "declare the service's interface(...) (its port), or fault connect directly",
        )
    rules: list[SyscallRule] = []
    for port in sorted({iface.port for iface in peer.interfaces}):
        action = Action(ActionKind.DENY, errno="ECONNREFUSED", label=f"partition {caller.name}->{peer.name}",
                        addr=f"*:{port}")  # fmt: skip
        rules += [replace(r, op=PARTITION_OP) for r in build_rules(caller, {"connect": action}, what)]
    return rules
