"""Monitors: invariants checked on every event as it enters the trace (DECISIONS §7-8)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from faultbox.errors import SourceLocation


@dataclass(eq=False)
class Monitor:
    """Either form of monitor.

    Callback form (the seed's): `fn(event)` is called for each event matching `filters`; `fail()`
    or any raise inside it is a violation. Stateful form: for each event matching `on`,
    `state = update(event, state)`, then `check(event, state)` must be truthy.
    """

    name: str
    fn: Callable[[Any], Any] | None = None
    filters: Mapping[str, str] = field(default_factory=dict)
    on: Callable[[Any], Any] | None = None
    state_init: Any = None
    update: Callable[[Any, Any], Any] | None = None
    check: Callable[[Any, Any], Any] | None = None
    spec_wide: bool = False  # a stateful monitor declared at top level runs in every test
    location: SourceLocation | None = None

    @property
    def stateful(self) -> bool:
        return self.fn is None

    def __repr__(self) -> str:
        return f"<monitor {self.name}>"
