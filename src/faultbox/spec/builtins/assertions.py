"""assert_*() and events(): checks on values and on the trace (DECISIONS §5).

Dict filters and `where=` combine with AND; every query sees every event type. Failure messages
show expected vs actual, and for trace assertions the events that came nearest."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from faultbox.errors import SpecFailure
from faultbox.model.event import Event, EventList
from faultbox.model.matcher import Matcher, to_matcher
from faultbox.spec import host as host_mod
from faultbox.spec.args import ArgError, type_name
from faultbox.spec.builtins import builtin
from faultbox.spec.registry import SpecBuilder
from faultbox.spec.values import starlark_repr, starlark_str

Where = Callable[[Event], Any]


def _count() -> None:
    host = host_mod.current()
    if host is not None:
        host.count_assertion()


def _filters(filters: Mapping[str, Any], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in filters.items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (str, int)):
            out[key] = str(value)
        else:
            raise ArgError(f"{what}: filter {key}= must be a string (a glob is allowed), got {type_name(value)}")
    return out


def _something_to_match(flt: Mapping[str, str], fn: Where | None, what: str) -> None:
    if not flt and fn is None:
        raise ArgError(
            f"{what}: nothing to match: with no filter and no where= it would match any event",
            'give where=lambda e: ... or filters such as type="syscall", service="db"',
        )


def _where(where: Any, what: str) -> Where | None:
    if where is None:
        return None
    if not callable(where):
        raise ArgError(f"{what}: where= must be a function taking an event, got {type_name(where)}")
    return where  # type: ignore[no-any-return]


def _describe(filters: Mapping[str, str], where: Where | None) -> str:
    parts = [f'{k}="{v}"' for k, v in filters.items()]
    if where is not None:
        parts.append("where=<function>")
    return ", ".join(parts) or "(no filters)"


def _event_lines(events: list[Event]) -> list[str]:
    return [e.describe() for e in events]


def _starlark_eq(a: Any, b: Any) -> bool:
    """Python's == except that bools never equal numbers (True == 1 is False in Starlark), at any depth."""
    if isinstance(a, bool) != isinstance(b, bool) and isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        same_kind = isinstance(a, list) == isinstance(b, list)
        return same_kind and len(a) == len(b) and all(_starlark_eq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_starlark_eq(a[k], b[k]) for k in a)
    return bool(a == b)


@builtin("assert_true", "cond: any, msg: any = None")
def assert_true(builder: SpecBuilder, cond: Any, msg: Any) -> None:
    _count()
    if not cond:
        text = starlark_str(msg) if msg is not None else f"assert_true failed: got {starlark_repr(cond)}"
        raise SpecFailure(text, {"assertion": "assert_true", "expected": "a true value", "actual": starlark_repr(cond)})


@builtin("assert_eq", "actual: any, expected: any, msg: any = None")
def assert_eq(builder: SpecBuilder, actual: Any, expected: Any, msg: Any) -> None:
    _count()
    if not _starlark_eq(actual, expected):
        a, e = starlark_repr(actual), starlark_repr(expected)
        note = f" ({starlark_str(msg)})" if msg is not None else ""
        raise SpecFailure(f"assert_eq failed: {a} != {e}{note}", {"assertion": "assert_eq", "expected": e, "actual": a})


@builtin("events", "where: any = None, **filters")
def events(builder: SpecBuilder, where: Any, filters: dict[str, Any]) -> EventList:
    """Matching events so far; `where` may be a function of the event, a matcher or a dict."""
    host = host_mod.require("events()")
    flt = _filters(filters, "events()")
    if isinstance(where, dict):
        where = to_matcher(where, "events(): where=")
    if isinstance(where, Matcher) and where.filter is not None:
        exact = {k: v for k, v, _ in where.filter.items}
        if not exact.keys() & flt.keys():  # the matcher's criteria start from the indexes too
            flt, where = {**flt, **exact}, None
    return EventList(host.query(flt, _where(where, "events()")))


@builtin("assert_eventually", "where: any = None, *, timeout: duration = '0s', **filters")
def assert_eventually(builder: SpecBuilder, where: Any, timeout: float, filters: dict[str, Any]) -> None:
    """Some event matches (in the trace so far, or within `timeout` if given)."""
    host = host_mod.require("assert_eventually()")
    _count()
    flt = _filters(filters, "assert_eventually()")
    fn = _where(where, "assert_eventually()")
    _something_to_match(flt, fn, "assert_eventually()")
    if host.query(flt, fn) or (timeout > 0 and host.wait_for(flt, fn, timeout)):
        return
    nearest = host.nearest(flt, 5)
    raise SpecFailure(
        f"assert_eventually: no event matched {_describe(flt, fn)}",
        {
            "assertion": "assert_eventually",
            "expected": _describe(flt, fn),
            "actual": "no matching event",
            "nearest": _event_lines(nearest),
        },
    )


@builtin("assert_never", "where: any = None, **filters")
def assert_never(builder: SpecBuilder, where: Any, filters: dict[str, Any]) -> None:
    host = host_mod.require("assert_never()")
    _count()
    flt = _filters(filters, "assert_never()")
    fn = _where(where, "assert_never()")
    _something_to_match(flt, fn, "assert_never()")
    found = host.query(flt, fn)
    if found:
        first = found[0]
        raise SpecFailure(
            f"assert_never: {len(found)} event(s) matched {_describe(flt, fn)}; first: {first.describe()}",
            {
                "assertion": "assert_never",
                "expected": "no matching event",
                "actual": first.describe(),
                "nearest": _event_lines(found[:5]),
            },
        )


def _side(value: Any, name: str) -> tuple[dict[str, str], Where | None]:
    if isinstance(value, dict):
        return _filters(value, f"assert_before(): {name}"), None
    if callable(value):
        return {}, value
    raise ArgError(f"assert_before(): {name}= must be a dict of filters or a function, got {type_name(value)}")


@builtin("assert_before", "*, first: any, then: any")
def assert_before(builder: SpecBuilder, first: Any, then: Any) -> None:
    """The first event matching `first` comes before the first event matching `then`."""
    host = host_mod.require("assert_before()")
    _count()
    f_filters, f_where = _side(first, "first")
    t_filters, t_where = _side(then, "then")
    firsts = host.query(f_filters, f_where)
    thens = host.query(t_filters, t_where)
    desc_f, desc_t = _describe(f_filters, f_where), _describe(t_filters, t_where)
    if not firsts:
        raise SpecFailure(
            f"assert_before: no event matched first={{{desc_f}}}",
            {
                "assertion": "assert_before",
                "expected": desc_f,
                "actual": "no matching event",
                "nearest": _event_lines(host.nearest(f_filters, 5)),
            },
        )
    if not thens:
        raise SpecFailure(
            f"assert_before: no event matched then={{{desc_t}}}",
            {
                "assertion": "assert_before",
                "expected": desc_t,
                "actual": "no matching event",
                "nearest": _event_lines(host.nearest(t_filters, 5)),
            },
        )
    if firsts[0].seq >= thens[0].seq:
        raise SpecFailure(
            f"assert_before: first={{{desc_f}}} came at #{firsts[0].seq}, after then={{{desc_t}}} at #{thens[0].seq}",
            {
                "assertion": "assert_before",
                "expected": f"#{firsts[0].seq} < #{thens[0].seq}",
                "actual": f"{firsts[0].describe()} after {thens[0].describe()}",
                "nearest": _event_lines([thens[0], firsts[0]]),
            },
        )
