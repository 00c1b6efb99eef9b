"""partition(a, b, run=fn): two services cannot reach each other while `run` runs.

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
    if direction not in _DIRECTIONS:
        raise ArgError(
            f'partition(): direction="{direction}" is not one of {", ".join(_DIRECTIONS)}',
            'a_to_b refuses only a\'s connections to b; "both" (the default) refuses both ways',
        )
    check_arity(run, 0, "partition(): run=", "no arguments")
    [svc_a] = _one_service(a, "partition(): the first service")
    [svc_b] = _one_service(b, "partition(): the second service")
    if svc_a.name == svc_b.name:
        raise ArgError(f"partition(): both sides are {svc_a.name}; name two different services")
    rules: list[SyscallRule] = []
    if direction in ("both", "a_to_b"):
        rules += _refuse(svc_a, svc_b)
    if direction in ("both", "b_to_a"):
        rules += _refuse(svc_b, svc_a)
    return host_mod.require("partition()").apply_faults(rules, run)


def _one_service(value: Any, what: str) -> list[Service]:
    services = services_of(value, what)
    if len(services) != 1:
        raise ArgError(f"{what} must be one service, got {len(services)}")
    return services


def _refuse(caller: Service, peer: Service) -> list[SyscallRule]:
    """connect() from `caller` to any interface of `peer` fails with ECONNREFUSED."""
    if not peer.interfaces:
        raise ArgError(
            f"partition(): {peer.name} has no interfaces, so {caller.name} has nothing to be cut from",
            "declare the service's interface(...) (its port), or fault connect directly",
        )
    rules: list[SyscallRule] = []
    for port in sorted({iface.port for iface in peer.interfaces}):
        action = Action(ActionKind.DENY, errno="ECONNREFUSED", label=f"partition {caller.name}->{peer.name}",
                        addr=f"*:{port}")  # fmt: skip
        rules += [replace(r, op=PARTITION_OP) for r in build_rules(caller, {"connect": action}, "partition()")]
    return rules
