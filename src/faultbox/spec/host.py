"""What builtins may ask of the running test.

The runner implements Host; spec code reaches processes, faults and the trace only through it, so
the spec package never imports the runner (ARCHITECTURE-NOTES §8.2). Outside a test (while a spec
loads) there is no host, and builtins that need one say so.

The running test's host is a context variable, not a global: two tests running in one process, each
on threads of its own, each see their own. A new thread does not inherit it (it starts in an empty
context), so every thread that runs spec code for a test must be given the test's context or host:
the runner starts a test's threads as _util.threads.ContextThread (which copies its creator's
context), and where spec code runs on a thread shared by tests (monitors and temporal predicates on
whichever thread appends an event, mock handlers on the proxy's threads) it makes the test's host
current around the call with `using`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, Protocol, TypeVar

from faultbox.model.decisions import Schedule
from faultbox.model.event import Event, EventTrace
from faultbox.model.fault import SyscallRule
from faultbox.model.matcher import Matcher
from faultbox.model.monitor import Monitor
from faultbox.model.scenario import FaultAssumption, Rule
from faultbox.model.temporal import Property
from faultbox.spec.args import ArgError

T = TypeVar("T")


class TraceQueries(EventTrace, Protocol):
    """The test's trace as the trace API reads it (trace.log.TraceLog)."""

    def select(
        self, filters: Mapping[str, str] | None = None, where: Callable[[Event], Any] | None = None
    ) -> list[Event]:
        """Events matching filters and `where`, in seq order."""
        ...

    def between(self, after: int, before: int | None) -> list[Event]:
        """Events with after < seq < before (None: to the end)."""
        ...

    def causal_chain(self, ev: Event) -> list[Event]:
        """Events whose vector clock precedes ev's, in seq order."""
        ...

    def holds(self, ev: Event) -> bool:
        """Whether ev is an event of this trace."""
        ...

    # What a temporal predicate asks most: answered without copying a list where the trace can.
    def count_matching(self, matcher: Matcher) -> int: ...

    def first_matching(self, matcher: Matcher) -> Event | None: ...

    def last_matching(self, matcher: Matcher) -> Event | None: ...


class LeafDecisions(Protocol):
    """The decisions of the running leaf (runner.leaf.LeafState): what a site of the test's body
    takes, recorded for fan-out and replay."""

    def choose(self, key: str, options: list[object], location: str) -> int:
        """The option index this run takes (0 for an anonymous choice, key "")."""

    def order(self, key: str, options: list[Schedule], location: str) -> Schedule | None:
        """The schedule the leaf forces on the parallel() at `key`, or None (a plain run)."""


class Host(Protocol):
    test_name: str

    @property
    def leaf(self) -> LeafDecisions:
        """The running leaf's decisions."""

    @property
    def run_seed(self) -> int:
        """The seed of this run (schedules and probability streams derive from it)."""

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

    def trace(self) -> TraceQueries:
        """The test's trace after a barrier: every event caused so far is in it."""

    def wait_until(self, check: Callable[[], T | None], timeout: float | None, what: str) -> T | None:
        """Call `check` (no event enters the trace meanwhile) until it returns something other than
        None, again after every new event; None after `timeout` seconds. With no timeout the wait
        ends at the test's deadline (TestTimeout). Refused inside a monitor (`what` names the call)."""

    def await_quiet(self, window: float, ignore: Callable[[Event], Any] | None) -> None:
        """Wait until no event (except those `ignore` accepts) has entered the trace for `window`
        seconds, counted from the call."""

    def add_monitor(self, monitor: Monitor) -> None:
        """Activate a monitor for the rest of the test."""

    def add_property(self, prop: Property) -> None:
        """Check an eventually/always for the rest of the test (an expectation of its verdict)."""

    def signal_anchor(self, name: str) -> None:
        """A lifecycle anchor ("stable") happened: windows starting or ending there move."""

    def print(self, text: str) -> None: ...

    def count_assertion(self) -> None: ...

    def checkpoint(self) -> None:
        """Raise MonitorStop after a violation, TestTimeout after the deadline."""

    def sleep(self, seconds: float) -> None: ...

    def choose(self, name: str, options: Sequence[Any], location: str) -> int:
        """The index of the option this run takes at choose(name, options): the leaf's, else 0.
        A named choice is recorded as a fan-out site of the test."""

    def run_parallel(
        self, fns: Sequence[Callable[[], Any]], schedule: Schedule | None = None, site: str = ""
    ) -> list[Any]:
        """Call the functions concurrently (each a client of its own); results in argument order.
        With a schedule, the services' cross-service steps are released in its order, and the
        order taken is recorded for the leaf at `site`."""

    def exempt_from_schedule(self, services: Sequence[str]) -> None:
        """nondet(svc, ...): these services are never held by a scheduled parallel() of this test."""


_current: ContextVar[Host | None] = ContextVar("faultbox_host", default=None)


def current() -> Host | None:
    """The host of the test this thread runs spec code for (None outside a test)."""
    return _current.get()


def set_current(host: Host | None) -> Token[Host | None]:
    """Make `host` current in this thread's context; reset(token) puts back what was current."""
    return _current.set(host)


def reset(token: Token[Host | None]) -> None:
    _current.reset(token)


class using:  # lower case: it reads as a call, `with using(host):`
    """`with using(host):` makes `host` current in this thread for the block, and then puts back
    what was current before (None, or another test's host on a thread shared by tests). A class,
    not a generator: the runner enters one around every dispatch of an event to its monitors."""

    __slots__ = ("_host", "_token")

    def __init__(self, host: Host) -> None:
        self._host = host
        self._token: Token[Host | None] | None = None

    def __enter__(self) -> Host:
        self._token = _current.set(self._host)
        return self._host

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None


def require(what: str) -> Host:
    """The running test's host, or an error saying `what` only works inside a test."""
    host = _current.get()
    if host is None:
        raise ArgError(
            f"{what} can only run inside a test",
            "call it from a def test_*(), a scenario, or an expect= function, not at the top level",
        )
    return host
