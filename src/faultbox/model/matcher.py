"""Matchers: named tests on an event (`match.event(...)`, `match.any/all/never`), and the one
conversion every trace query and causal method applies to what it is given to match with.

A matcher is callable (`m(e)` is `m.match(e)`), so it also works where a function of the event is
expected: `events(where=m)`, a monitor's `on=`. A matcher made only of criteria keeps its Filter,
so a query can start from the trace's indexes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from faultbox._util.durations import DurationError, parse_duration
from faultbox.errors import Code, FaultboxError
from faultbox.model.filter import Filter

Test = Callable[[Any], Any]


class EventArgError(FaultboxError, TypeError):
    """A trace query or a causal method was given something it cannot use (the spec's mistake;
    the spec line comes from the traceback, as for any builtin)."""

    code = Code.SPEC_BAD_ARGUMENT


class Matcher:
    __slots__ = ("_test", "filter", "key", "name")

    def __init__(
        self, name: str, test: Callable[[Any], bool], flt: Filter | None = None, key: Hashable | None = None
    ) -> None:
        self.name = name
        self._test = test
        self.filter = flt  # set only when the matcher is exactly these criteria
        # Equal keys match the same events: a predicate that builds match.event(type="x") afresh at
        # every call still finds the events already collected for it (trace/properties.py).
        self.key = key

    @classmethod
    def criteria(cls, criteria: Mapping[str, str]) -> Matcher:
        """Every key must match (type=, service=, or a field; globs allowed); an empty value
        matches anything, as in the reference."""
        kept = {k: v for k, v in criteria.items() if v != ""}
        flt = Filter.of(kept)
        shown = ", ".join(f'{k}="{v}"' for k, v in criteria.items())
        return cls(f"event({shown})", flt.match, flt, ("event", frozenset(kept.items())))

    @classmethod
    def any_of(cls, matchers: Sequence[Matcher]) -> Matcher:
        tests = [m.match for m in matchers]
        name = f"any({', '.join(m.name for m in matchers)})"
        return cls(name, lambda e: any(t(e) for t in tests), key=_composite("any", matchers))

    @classmethod
    def all_of(cls, matchers: Sequence[Matcher]) -> Matcher:
        tests = [m.match for m in matchers]
        name = f"all({', '.join(m.name for m in matchers)})"
        return cls(name, lambda e: all(t(e) for t in tests), key=_composite("all", matchers))

    @classmethod
    def never(cls) -> Matcher:
        return cls("never()", lambda e: False, key=("never",))

    def match(self, ev: Any) -> bool:
        return bool(self._test(ev))

    def __call__(self, ev: Any) -> bool:
        return self.match(ev)

    def __repr__(self) -> str:
        return f"<matcher {self.name}>"


def _composite(op: str, matchers: Sequence[Matcher]) -> Hashable | None:
    keys = tuple(m.key for m in matchers)
    return None if any(k is None for k in keys) else (op, keys)


def kind(value: object) -> str:
    """A value's Starlark-facing type name, for messages (the model cannot ask the spec layer)."""
    if value is None:
        return "NoneType"
    if isinstance(value, bool):
        return "bool"
    names = {str: "string", int: "int", float: "float", list: "list", tuple: "tuple", dict: "dict"}
    for cls, name in names.items():
        if isinstance(value, cls):
            return name
    if isinstance(value, Matcher):
        return "matcher"
    if type(value).__name__ == "Event":
        return "event"
    if callable(value):
        return "function"
    return type(value).__name__


def criteria_text(value: object, what: str, key: str) -> str:
    """A criterion's value as the string it is compared with (ints and bools spelled as fields are)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)):
        return str(value)
    raise EventArgError(f"{what}: {key}= must be a string (a glob is allowed), got {kind(value)}")


def to_matcher(value: object, what: str) -> Matcher:
    """A matcher from what a spec passes: a matcher, a dict of criteria, or a function of the event."""
    if isinstance(value, Matcher):
        return value
    if isinstance(value, dict):
        return Matcher.criteria({str(k): criteria_text(v, what, str(k)) for k, v in value.items()})
    if callable(value):
        name = getattr(value, "__name__", "function").replace("<lambda>", "lambda")
        return Matcher(f"<function {name}>", value, key=("function", value))
    raise EventArgError(
        f"{what}: expected a matcher (match.event(...)), a function of the event or a dict of filters, "
        f"got {kind(value)}",
        'write e.g. match.event(type="stdout", service="api") or lambda e: e.type == "wal"',
    )


def window_seconds(value: object, what: str) -> float:
    """A time window: a duration string ("500ms") or nanoseconds (what duration() returns); never
    negative."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise EventArgError(
            f'{what}: the window must be a duration such as "500ms" (or nanoseconds from duration()), got {kind(value)}'
        )
    if isinstance(value, int):
        seconds = value / 1e9
    else:
        try:
            seconds = parse_duration(value)
        except DurationError as exc:
            raise EventArgError(f"{what}: {exc}") from None
    if seconds < 0:
        raise EventArgError(f"{what}: the window must not be negative (got {value!r})")
    return seconds
