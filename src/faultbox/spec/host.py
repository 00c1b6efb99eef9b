"""What builtins may ask of the running test.

The runner implements Host; spec code reaches processes, faults and the trace only through it, so
the spec package never imports the runner (ARCHITECTURE-NOTES §8.2). Outside a test (while a spec
loads) there is no host, and builtins that need one say so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from faultbox.model.event import Event
from faultbox.model.fault import SyscallRule
from faultbox.model.monitor import Monitor
from faultbox.model.scenario import FaultAssumption, Rule
from faultbox.spec.args import ArgError


class Host(Protocol):
    test_name: str

    def step(self, service: str, interface: str, method: str, kwargs: Mapping[str, Any]) -> Any:
        """Run a protocol step against a service's interface; returns a Response (or str for tcp)."""

    def apply_faults(self, rules: Sequence[Rule], run: Callable[[], Any] | None) -> Any:
        """Install rules; with `run`, call it and remove exactly these rules afterwards (even on
        error) and return its result; without, keep them until stop_faults()."""

    def stop_faults(self, service: str, interface: str | None = None, *, traces: bool = False) -> None:
        """Remove the fault_start() rules of a service, or of one of its interfaces only; with
        `traces`, its trace_start() rules instead."""

    def start_partition(self, pair: frozenset[str], rules: Sequence[SyscallRule]) -> None:
        """Install a partition's rules until stop_partition(pair) (one at a time per pair)."""

    def stop_partition(self, pair: frozenset[str]) -> None:
        """Remove the partition of that pair (an error when it has none)."""

    def apply_assumptions(self, assumptions: Sequence[FaultAssumption], run: Callable[[], Any]) -> Any:
        """Activate assumptions (rules and monitors) around `run`."""

    def query(self, filters: Mapping[str, str], where: Callable[[Event], Any] | None) -> list[Event]:
        """Events of the current test matching filters and `where` (after a trace barrier)."""

    def nearest(self, filters: Mapping[str, str], limit: int) -> list[Event]:
        """Events closest to matching `filters`, for failure messages."""

    def wait_for(self, filters: Mapping[str, str], where: Callable[[Event], Any] | None, timeout: float) -> bool:
        """Wait until an event matches (checking monitors); False on timeout."""

    def add_monitor(self, monitor: Monitor) -> None:
        """Activate a monitor for the rest of the test."""

    def print(self, text: str) -> None: ...

    def count_assertion(self) -> None: ...

    def checkpoint(self) -> None:
        """Raise MonitorStop after a violation, TestTimeout after the deadline."""

    def sleep(self, seconds: float) -> None: ...

    def run_parallel(self, fns: Sequence[Callable[[], Any]]) -> list[Any]:
        """Call the functions concurrently (each a client of its own); results in argument order."""


_current: Host | None = None


def current() -> Host | None:
    return _current


def set_current(host: Host | None) -> None:
    global _current
    _current = host


def require(what: str) -> Host:
    """The running test's host, or an error saying `what` only works inside a test."""
    if _current is None:
        raise ArgError(
            f"{what} can only run inside a test",
            "call it from a def test_*(), a scenario, or an expect= function, not at the top level",
        )
    return _current
