"""monitor(): both forms (DECISIONS §7).

    monitor(fn, service="api")                       callback form (the seed's); fn(event)
    monitor("name", on=..., state_init=, update=, check=)   stateful form

A callback monitor declared at top level is inert until attached through monitors= of a
fault_assumption, fault_scenario or fault_matrix; called inside a test it is active for that test.
A stateful monitor at top level is active in every test, unless it is attached somewhere.
"""

from __future__ import annotations

import dis
import types
from collections.abc import Mapping
from typing import Any

from faultbox.model.filter import Filter
from faultbox.model.monitor import Monitor
from faultbox.model.scenario import callable_name
from faultbox.spec import host as host_mod
from faultbox.spec.args import ArgError, check_arity, type_name
from faultbox.spec.builtins import Builtin, builtin
from faultbox.spec.builtins.assertions import _filters
from faultbox.spec.compile import current_location
from faultbox.spec.registry import SpecBuilder


@builtin(
    "monitor",
    "first: any, *rest, name: str? = None, on: any = None, state_init: any = None, update: any = None, "
    "check: any = None, **filters",
)
def monitor(
    builder: SpecBuilder,
    first: Any,
    rest: tuple[Any, ...],
    name: str | None,
    on: Any,
    state_init: Any,
    update: Any,
    check: Any,
    filters: dict[str, Any],
) -> Monitor:
    if isinstance(first, str):
        m = _stateful(first, rest, on, state_init, update, check, filters)
    elif callable(first):
        if rest or on is not None or update is not None or check is not None:
            raise ArgError(
                "monitor(fn, ...): the callback form takes only filters as keywords (service=, type=, ...)",
                'for state, use monitor("name", on=..., state_init=..., update=..., check=...)',
            )
        check_arity(first, 1, "monitor()", "the event")
        _only_reads(first, "monitor()")
        m = Monitor(
            name=name or callable_name(first),
            fn=first,
            filters=_filters(filters, "monitor()"),
            location=current_location(),
        )
    else:
        raise ArgError(
            f"monitor(): the first argument must be a function (callback form) or a name (stateful form), "
            f"got {type_name(first)}",
            'write monitor(check_fn, service="api") or monitor("name", on=..., check=...)',
        )
    host = host_mod.current()
    if host is not None:
        host.add_monitor(m)
    elif m.stateful:
        builder.spec_monitors.append(m)
    return m


def _stateful(
    name: str, rest: tuple[Any, ...], on: Any, state_init: Any, update: Any, check: Any, filters: dict[str, Any]
) -> Monitor:
    what = f'monitor("{name}")'
    if rest:
        if on is not None or len(rest) > 1:
            raise ArgError(f"{what}: give on= once (positionally after the name, or by keyword)")
        on = rest[0]
    if filters:
        if on is not None:
            raise ArgError(f"{what}: give either on= or filter keywords, not both")
        on = _filters(filters, what)
    if on is None:
        raise ArgError(f"{what}: on= is required (a function of the event, or a dict of filters)")
    if isinstance(on, dict):
        flt = Filter.of(_filters(on, what))
        on_fn = flt.match
    elif callable(on):
        on_fn = on
    else:
        raise ArgError(f"{what}: on= must be a function or a dict of filters, got {type_name(on)}")
    if callable(on):
        check_arity(on, 1, f"{what}: on=", "the event")
        _only_reads(on, f"{what}: on=")
    for label, fn in (("update", update), ("check", check)):
        if fn is not None and not callable(fn):
            raise ArgError(f"{what}: {label}= must be a function, got {type_name(fn)}")
        if fn is not None:
            check_arity(fn, 2, f"{what}: {label}=", "the event and the state")
            _only_reads(fn, f"{what}: {label}=")
    if update is None and check is None:
        raise ArgError(f"{what}: give check= (and optionally update=); without them the monitor checks nothing")
    return Monitor(
        name=name,
        on=on_fn,
        state_init=state_init,
        update=update,
        check=check,
        spec_wide=True,
        location=current_location(),
    )


# Builtins that act on the system or the topology: a monitor runs while an event enters the trace,
# possibly on the thread that must answer that very change, so it may only read.
_ACTING = frozenset({
    "fault", "fault_start", "fault_stop", "fault_all", "trace", "trace_start", "trace_stop",
    "partition", "partition_start", "partition_stop", "release", "service", "mock_service",
    "managed_service", "interface", "parallel", "sleep", "fault_scenario", "fault_matrix", "scenario",
    "await_event", "await_stable",
})  # fmt: skip


def _only_reads(fn: Any, what: str) -> None:
    """Refuse, when the spec loads, a monitor whose own code calls a builtin that acts: the same
    call would otherwise fail the test only when the monitor first runs."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return
    spec_globals = getattr(fn, "__globals__", {})
    found = _acting_call(code, spec_globals)
    if found is not None:
        name, line = found
        raise ArgError(
            f"{what}: the monitor calls {name}() (line {line}); a monitor only reads the trace",
            "start faults, services and waits in the test or the scenario; a monitor checks events and fail()s",
        )


def _universe(spec_globals: Mapping[str, Any]) -> Mapping[str, Any]:
    found = spec_globals.get("__builtins__")
    return found if isinstance(found, Mapping) else {}


def _acting_call(code: types.CodeType, spec_globals: Mapping[str, Any]) -> tuple[str, int] | None:
    for ins in dis.get_instructions(code):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(ins.argval, str):
            value = spec_globals.get(ins.argval, _universe(spec_globals).get(ins.argval))
            name = getattr(value, "name", None) if isinstance(value, Builtin) else None
            if name in _ACTING:
                return name, ins.positions.lineno if ins.positions and ins.positions.lineno else code.co_firstlineno
    for const in code.co_consts:  # lambdas and functions defined inside the monitor
        if isinstance(const, types.CodeType):
            found = _acting_call(const, spec_globals)
            if found is not None:
                return found
    return None
