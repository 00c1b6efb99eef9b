"""Temporal properties (`eventually`, `always`) and the declarative `test()` that carries them.

These are plain values: what a spec declared. Checking them against a trace is trace/properties.py;
running a `test()` and judging it is runner/temporal.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from faultbox.errors import SourceLocation
from faultbox.model.matcher import Matcher

# Lifecycle anchors a window may start or end at; any other anchor is a matcher.
BODY_START = "body_start"
BODY_END = "body_end"
STABLE = "stable"
LIFECYCLE_ANCHORS = (BODY_START, BODY_END, STABLE)

Anchor = str | Matcher
Kind = Literal["eventually", "always"]


@dataclass(frozen=True, eq=False)
class Property:
    """One `eventually(...)` or `always(...)`.

    `predicate` is a function of the trace; `matcher` replaces it for `eventually(m)` ("an event
    matching m exists"). `anchor` (eventually only) delays evaluation until an event matches it;
    `start`/`end` (always only) bound the window in which the predicate must hold. The value holds
    no checking state: one value may be shared by many tests and runs."""

    kind: Kind
    predicate: Callable[[Any], Any] | None = None
    matcher: Matcher | None = None
    anchor: Matcher | None = None
    start: Anchor | None = None
    end: Anchor | None = None
    location: SourceLocation | None = None

    @property
    def where(self) -> str:
        """How a reason names it: `eventually at spec.star:14`."""
        return f"{self.kind} at {_short(self.location)}" if self.location else self.kind

    def __repr__(self) -> str:
        return f"<{self.where}>"


@dataclass(frozen=True, eq=False)
class TemporalTest:
    """What `test(name, body=..., ...)` declared."""

    name: str
    body: Callable[[], Any]
    setup: Callable[[], Any] | None = None
    expect: tuple[Property, ...] = ()
    terminate_when: Property | None = None
    assume: tuple[Any, ...] = ()  # callables (given the choices dict) or bools
    timeout: float = 30.0
    location: SourceLocation | None = None


def _short(loc: SourceLocation) -> str:
    """`spec.star:14`: the file's name is enough in a reason (the result carries the full path)."""
    return f"{loc.file.rsplit('/', 1)[-1]}:{loc.line}"
