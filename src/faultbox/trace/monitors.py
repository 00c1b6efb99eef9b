"""Real-time monitor dispatch (DECISIONS §7-8).

A MonitorSet listens on a TraceLog. For every event it runs the active monitors whose filters match,
synchronously. The first violation is kept (with the event and the few events before it) and the
`on_violation` callback is told, so the runner can stop the scenario at its next step or wait.
A monitor that raises is a violation, never ignored.

Monitors run on whichever thread appends the event (the test body, the output pump, an event
source) while that thread holds the log's lock, so a monitor that never returns would stall the
whole test. The runner's watchdog calls `interrupt_overdue` to stop such a call at the deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from faultbox.errors import MonitorOverdue, SpecFailure
from faultbox.model.event import Event
from faultbox.model.filter import Filter
from faultbox.model.monitor import Monitor
from faultbox.model.result import Violation
from faultbox.trace.log import TraceLog
from faultbox.trace.overdue import CallWatch

# (exception) -> (message, spec location "file:line" or "")
ExceptionDescriber = Callable[[BaseException], tuple[str, str]]

_CONTEXT_EVENTS = 5
# A proxy's connections opening and closing say little about why an invariant broke, and their
# timing against the system's own events varies from run to run: the context leaves them out.
_BOOKKEEPING = frozenset({"proxy_conn_open", "proxy_conn_close"})


@dataclass(eq=False)
class _Active:
    monitor: Monitor
    flt: Filter
    state: Any = None
    calls: int = 0


@dataclass
class MonitorSet:
    log: TraceLog
    describe: ExceptionDescriber
    on_violation: Callable[[Violation], None] | None = None
    violation: Violation | None = None
    later_violations: list[Violation] = field(default_factory=list)
    calls_total: int = 0  # monitor calls in this test, for the vacuity warning
    _active: list[_Active] = field(default_factory=list)
    _watch: CallWatch = field(default_factory=lambda: CallWatch(MonitorOverdue))

    def __post_init__(self) -> None:
        self.log.subscribe(self._dispatch)

    def add(self, monitor: Monitor) -> object:
        """Activate a monitor; returns a handle for remove()."""
        handle = _Active(monitor, Filter.of(monitor.filters), monitor.state_init)
        with self.log.lock:
            self._active.append(handle)
        return handle

    def remove(self, handle: object) -> None:
        with self.log.lock:
            if handle in self._active:
                self._active.remove(handle)

    def active_names(self) -> list[str]:
        return [a.monitor.name for a in self._active]

    def stats(self) -> dict[str, int]:
        return {a.monitor.name: a.calls for a in self._active}

    def _dispatch(self, ev: Event) -> None:
        for active in self._active:
            if active.flt.items and not active.flt.match(ev):
                continue
            active.calls += 1
            self.calls_total += 1
            try:
                with self._watch.watching():
                    if active.monitor.stateful:
                        self._run_stateful(active, ev)
                    else:
                        assert active.monitor.fn is not None
                        active.monitor.fn(ev)
            except (Exception, SpecFailure) as exc:  # any raise inside a monitor is a violation
                message, location = self.describe(exc)
                self._record(active.monitor, ev, message, location)

    def interrupt_overdue(self, deadline: float) -> bool:
        """Stop the monitor call in progress if it runs past the deadline: it fails with
        MonitorOverdue, a violation like any other raise."""
        return self._watch.interrupt_overdue(deadline)

    def _run_stateful(self, active: _Active, ev: Event) -> None:
        mon = active.monitor
        if mon.on is not None:
            try:
                if not mon.on(ev):
                    return
            except Exception:
                return  # an `on` predicate that raises means "no match"
        new_state = mon.update(ev, active.state) if mon.update is not None else active.state
        if mon.check is not None:
            ok = mon.check(ev, new_state)
            if not ok:
                raise SpecFailure(f"check returned {ok!r} with state {new_state!r}")
        active.state = new_state

    def _record(self, monitor: Monitor, ev: Event, message: str, location: str) -> None:
        before = self.log.tail(_CONTEXT_EVENTS, before_seq=ev.seq, skip=_BOOKKEEPING)
        violation = Violation(
            monitor=monitor.name,
            message=message,
            seq=ev.seq,
            event=ev.to_dict(),
            before=[e.to_dict() for e in before],
            location=location or (str(monitor.location) if monitor.location else ""),
        )
        if self.violation is None:
            self.violation = violation
            if self.on_violation is not None:
                self.on_violation(violation)
        elif len(self.later_violations) < 20:
            self.later_violations.append(violation)
