"""Syscall faults: deny/delay/allow/hold values, and fault()/fault_start()/trace() scopes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from faultbox._util.durations import format_duration
from faultbox._util.spell import did_you_mean
from faultbox.model.fault import (
    ERRNO_NAMES,
    Action,
    ActionKind,
    ProbabilityError,
    SyscallRule,
    parse_probability,
)
from faultbox.model.proxy import ProxyFault
from faultbox.model.scenario import FaultAssumption, Rule
from faultbox.model.service import Service
from faultbox.model.syscalls import FAMILIES, PATH_SELECTABLE, expand, known_syscalls
from faultbox.spec import host as host_mod
from faultbox.spec.args import ArgError, register_type, register_type_name, type_name
from faultbox.spec.builtins import builtin
from faultbox.spec.builtins.protocol_faults import MATCHER_PARAMS, bind, proxy_delay
from faultbox.spec.registry import SpecBuilder
from faultbox.spec.values import InterfaceRef, ServiceValue

register_type_name(Action, "fault")
register_type_name(FaultAssumption, "fault_assumption")
register_type("fault", lambda v: isinstance(v, Action), "a fault (deny(...), delay(...), allow())")

_ADDR_SYSCALLS = frozenset({"connect", "sendto", "sendmsg", "sendmmsg"})


def _probability(value: Any, what: str) -> float:
    try:
        return parse_probability(value)
    except ProbabilityError as exc:
        raise ArgError(f"{what}: {exc}") from None


_MAX_FIRES = 10  # 2**10 leaves: past that, exhaustive is not a plan anyone runs


def _max_fires(max_fires: int, mode: str, probability: float, what: str) -> int:
    """max_fires=N makes the fault's first N occurrences a fan-out site (2**N leaves, each firing
    a different subset of them); mode="exhaustive" says so, mode="stochastic" (the default) draws."""
    if mode not in ("", "exhaustive", "stochastic"):
        raise ArgError(
            f'{what}: mode="{mode}" is not a mode', 'write mode="exhaustive" (with max_fires=) or drop mode='
        )
    if mode == "stochastic" and max_fires:
        raise ArgError(
            f'{what}: mode="stochastic" draws every occurrence, so max_fires= has no meaning with it',
            'drop max_fires=, or write mode="exhaustive"',
        )
    if mode == "exhaustive" and not max_fires:
        raise ArgError(
            f'{what}: mode="exhaustive" needs max_fires=N: the first N occurrences are explored',
            'write e.g. max_fires=2, mode="exhaustive" (4 leaves)',
        )
    if max_fires < 0 or max_fires > _MAX_FIRES:
        raise ArgError(f"{what}: max_fires must be between 1 and {_MAX_FIRES} (2**N leaves), got {max_fires}")
    if max_fires and probability >= 1.0:
        raise ArgError(
            f"{what}: max_fires= explores whether each occurrence fires, and probability 1 always fires",
            'give a probability below 1, e.g. probability="50%", max_fires=2',
        )
    return max_fires


@builtin(
    "deny",
    "errno: str, *, probability: any = 1.0, label: str = '', path: str? = None, addr: str? = None, "
    "max_fires: int = 0, mode: str = ''",
)
def deny(
    builder: SpecBuilder,
    errno: str,
    probability: Any,
    label: str,
    path: str | None,
    addr: str | None,
    max_fires: int,
    mode: str,
) -> Action:
    name = errno.upper()
    if name not in ERRNO_NAMES:
        raise ArgError(
            f'deny(): unknown errno "{errno}"{did_you_mean(name, ERRNO_NAMES)}',
            f"supported: {', '.join(ERRNO_NAMES)}",
        )
    p = _probability(probability, "deny()")
    fires = _max_fires(max_fires, mode, p, "deny()")
    return Action(ActionKind.DENY, errno=name, probability=p, label=label, path=path, addr=addr, max_fires=fires)


@builtin(
    "delay",
    "duration: duration? = None, *, delay: duration? = None, addr: str? = None, max_fires: int = 0, mode: str = '', "
    + MATCHER_PARAMS,
)
def delay(
    builder: SpecBuilder,
    duration: float | None,
    delay: float | None,
    addr: str | None,
    max_fires: int,
    mode: str,
    probability: Any,
    times: int,
    label: str,
    **matchers: str | None,
) -> Action | ProxyFault:
    """delay("500ms") is a syscall fault; delay(<matchers>, delay="500ms") a protocol fault."""
    path = matchers.pop("path")
    if delay is not None:
        if duration is not None:
            raise ArgError(
                "delay(): the duration is given twice (positionally and as delay=)",
                'a syscall delay is delay("500ms"); a protocol delay is delay(path="/x", delay="500ms")',
            )
        if addr is not None:
            raise ArgError("delay(): addr= narrows a syscall delay; a protocol delay matches requests, not addresses")
        if max_fires or mode:
            raise ArgError(
                "delay(): max_fires= and mode= explore a syscall fault's occurrences; a protocol delay "
                "is bounded with times=",
                'write delay("500ms", probability="50%", max_fires=2) for a syscall delay',
            )
        return proxy_delay(delay, probability, times, label, {**matchers, "path": path})
    if duration is None:
        raise ArgError(
            "delay() needs a duration",
            'delay("500ms") delays syscalls; delay(path="/x", delay="500ms") delays matching requests',
        )
    given = [name for name, value in matchers.items() if value is not None] + (["times"] if times else [])
    if given:
        raise ArgError(
            f"delay(): {given[0]}= matches protocol requests, and a positional duration makes a syscall delay",
            f'write delay({given[0]}=..., delay="{format_duration(duration)}") for a protocol delay',
        )
    if duration <= 0:
        raise ArgError("delay(): the duration must be positive")
    p = _probability(probability, "delay()")
    return Action(
        ActionKind.DELAY,
        delay=duration,
        probability=p,
        label=label,
        path=path,
        addr=addr,
        max_fires=_max_fires(max_fires, mode, p, "delay()"),
    )


@builtin("allow", "")
def allow(builder: SpecBuilder) -> Action:
    """A rule that never fires: it puts a syscall in the service's filter so its calls are recorded."""
    return Action(ActionKind.ALLOW)


@builtin("hold", "tag: str = 'held', *, path: str? = None, addr: str? = None")
def hold(builder: SpecBuilder, tag: str, path: str | None, addr: str | None) -> Action:
    """Park matching syscalls until release(tag) lets them go (or the fault scope ends)."""
    return Action(ActionKind.HOLD, tag=tag, path=path, addr=addr)


@builtin("release", "tag: str = 'held', *, errno: str? = None, count: int = 0")
def release(builder: SpecBuilder, tag: str, errno: str | None, count: int) -> int:
    """Let held syscalls continue (or fail with errno); returns how many were released."""
    host = host_mod.require("release()")
    if errno is not None and errno.upper() not in ERRNO_NAMES:
        raise ArgError(f'release(): unknown errno "{errno}"')
    releaser = getattr(host, "release", None)
    if releaser is None:
        raise ArgError("release(): this runner has no held syscalls")
    result: int = releaser(tag, errno.upper() if errno else None, count)
    return result


# -- building rules ----------------------------------------------------------------------------


def services_of(target: Any, what: str) -> list[Service]:
    """The services a fault target names: a service, an interface of one, or a list of them."""
    if isinstance(target, ServiceValue):
        return [target.model]
    if isinstance(target, InterfaceRef):
        return [target.owner]
    if isinstance(target, (list, tuple)):
        out: list[Service] = []
        for item in target:
            out.extend(services_of(item, what))
        return out
    raise ArgError(f"{what}: the target must be a service (or a list of services), got {type_name(target)}")


def build_rules(svc: Service, keywords: Mapping[str, Any], what: str) -> list[SyscallRule]:
    """`write=deny("EIO")` on a service -> SyscallRules with families and named ops expanded."""
    if svc.is_mock and keywords:
        iface = svc.interfaces[0].name
        raise ArgError(
            f"{what}: {svc.name} is a mock, served by faultbox without a process of its own: syscall faults "
            "cannot reach it",
            f"fault its interface with protocol faults instead, e.g. "
            f"fault({svc.name}.{iface}, error(status = 503), run = ...)",
        )
    rules: list[SyscallRule] = []
    known = known_syscalls()
    for key, action in keywords.items():
        if not isinstance(action, Action):
            raise ArgError(
                f"{what}: {key}= must be a fault (deny/delay/allow/hold), got {type_name(action)}",
                f'example: {key}=deny("EIO")',
            )
        op = svc.ops.get(key)
        if op is not None:
            syscalls: list[str] = []
            for sc in op.syscalls:
                syscalls.extend(s for s in expand(sc) if s not in syscalls)
            if op.path and action.path:
                raise ArgError(f"{what}: op {key} already has path={op.path}; do not give path= again")
            path = op.path or action.path
        elif key in known or key in FAMILIES:
            syscalls = list(expand(key))
            path = action.path
        else:
            ops = f"; named ops of {svc.name}: {', '.join(svc.ops)}" if svc.ops else ""
            raise ArgError(
                f'{what}: unknown syscall or op "{key}" for service "{svc.name}"'
                f"{did_you_mean(key, [*FAMILIES, *svc.ops, *known])}{ops}",
                "use a syscall name (write, read, openat, fsync, connect, ...) or an op from service(ops=)",
            )
        if not syscalls:
            raise ArgError(f'{what}: "{key}" names no syscall this machine has')
        if path and not all(s in PATH_SELECTABLE for s in syscalls):
            raise ArgError(f"{what}: path= only applies to syscalls on files (open, write, fsync, ...), not {key}")
        if action.addr and not all(s in _ADDR_SYSCALLS for s in syscalls):
            raise ArgError(f"{what}: addr= only applies to connect and sendto, not {key}")
        rules.append(
            SyscallRule(
                service=svc.name,
                keyword=key,
                syscalls=tuple(syscalls),
                action=action,
                op=key if op is not None else "",
                path=path,
                addr=action.addr,
            )
        )
    return rules


def _rules_for(target: Any, keywords: Mapping[str, Any], what: str) -> list[SyscallRule]:
    if not keywords:
        raise ArgError(f'{what}: name at least one syscall fault, e.g. write=deny("EIO")')
    services = services_of(target, what)
    if not services:
        raise ArgError(f"{what}: the target names no service (an empty list): the fault would do nothing")
    rules: list[SyscallRule] = []
    for svc in services:
        rules.extend(build_rules(svc, keywords, what))
    return rules


def _assumptions(target: Any) -> list[FaultAssumption] | None:
    if isinstance(target, FaultAssumption):
        return [target]
    if isinstance(target, (list, tuple)) and target and all(isinstance(t, FaultAssumption) for t in target):
        return list(target)
    return None


def _all_rules(target: Any, protocol: tuple[Any, ...], syscall: Mapping[str, Any], what: str) -> list[Rule]:
    """Protocol faults (positional) on the target's interfaces, syscall faults (keywords) on its
    services: one scope holds both."""
    rules: list[Rule] = []
    if protocol:
        rules.extend(bind(target, protocol, what))
    if syscall or not protocol:
        rules.extend(_rules_for(target, syscall, what))
    return rules


@builtin("fault", "target: any, *protocol_rules, run: callable? = None, **rules")
def fault(
    builder: SpecBuilder,
    target: Any,
    protocol_rules: tuple[Any, ...],
    run: Callable[[], Any] | None,
    rules: dict[str, Any],
) -> Any:
    """fault(svc, run=fn, write=deny("EIO")), fault(svc.iface, error(...), run=fn) or
    fault(assumption, run=fn): the rules live while fn runs."""
    if run is None:
        raise ArgError(
            "fault() needs run=: the function during which the fault is active",
            'write fault(db, write=deny("EIO"), run=scenario), or use fault_start()/fault_stop()',
        )
    assumptions = _assumptions(target)
    if assumptions is not None:
        if rules or protocol_rules:
            raise ArgError("fault(assumption, ...) takes no extra rules; put them in the assumption")
        return host_mod.require("fault()").apply_assumptions(assumptions, run)
    built = _all_rules(target, protocol_rules, rules, "fault()")
    return host_mod.require("fault()").apply_faults(built, run)


@builtin("fault_all", "targets: list, *, run: callable, **rules")
def fault_all(builder: SpecBuilder, targets: list[Any], run: Callable[[], Any], rules: dict[str, Any]) -> Any:
    built = _rules_for(targets, rules, "fault_all()")
    return host_mod.require("fault_all()").apply_faults(built, run)


@builtin("fault_start", "target: any, *protocol_rules, **rules")
def fault_start(builder: SpecBuilder, target: Any, protocol_rules: tuple[Any, ...], rules: dict[str, Any]) -> None:
    built = _all_rules(target, protocol_rules, rules, "fault_start()")
    host_mod.require("fault_start()").apply_faults(built, None)


@builtin("fault_stop", "target: any")
def fault_stop(builder: SpecBuilder, target: Any) -> None:
    """Remove what fault_start() put on a service (every interface and syscall), or on one interface."""
    host = host_mod.require("fault_stop()")
    if isinstance(target, InterfaceRef):
        host.stop_faults(target.service, target.name)
        return
    for svc in services_of(target, "fault_stop()"):
        host.stop_faults(svc.name)


def _trace_rules(target: Any, syscalls: list[str], what: str) -> list[SyscallRule]:
    if not syscalls:
        raise ArgError(f'{what}: syscalls= must name at least one syscall, e.g. ["openat", "write"]')
    trace_action = Action(ActionKind.TRACE)
    return _rules_for(target, dict.fromkeys(syscalls, trace_action), what)


@builtin("trace", "target: any, *, syscalls: strlist, run: callable")
def trace(builder: SpecBuilder, target: Any, syscalls: list[str], run: Callable[[], Any]) -> Any:
    """Record the listed syscalls of a service while `run` runs (they are always in its filter)."""
    return host_mod.require("trace()").apply_faults(_trace_rules(target, syscalls, "trace()"), run)


@builtin("trace_start", "target: any, *, syscalls: strlist")
def trace_start(builder: SpecBuilder, target: Any, syscalls: list[str]) -> None:
    host_mod.require("trace_start()").apply_faults(_trace_rules(target, syscalls, "trace_start()"), None)


@builtin("trace_stop", "target: any")
def trace_stop(builder: SpecBuilder, target: Any) -> None:
    host = host_mod.require("trace_stop()")
    for svc in services_of(target, "trace_stop()"):
        host.stop_faults(svc.name, traces=True)
