"""The append-only event log of one test.

Every event gets its seq and vector clock here, enters the indexes, and is handed synchronously to
the listeners (the monitors) before `append` returns (DECISIONS §8). Appends come from several
threads (the I/O pump, event sources, the test body); one re-entrant lock serialises them, so a
monitor sees the trace exactly up to the event it is called for, and may query it.

Listeners run spec code (monitors, temporal predicates) on whichever thread appends, often one
shared by every test of the run (the I/O pump, the proxy reader, the supervisor's reader): the log's
owner gives an `enter` that is entered around them (the runner makes the test's host current there,
spec/host.py), since such a thread's own context knows nothing of the test.

A thread may wait for the trace to grow (`wait_beyond`): every append wakes the waiters, so
await_event(), await_stable() and assert_eventually(timeout=) wait on events, not on a timer.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from faultbox._util.hints import hint_for
from faultbox.model.event import Event, clock_before
from faultbox.model.filter import Filter
from faultbox.model.matcher import Matcher

Listener = Callable[[Event], None]
_EMPTY: list[Event] = []


class MatchingQueries(abc.ABC):
    """count, first and last of a `matching()`: the trace log's own, and the one a temporal
    property's predicate reads through (trace/properties.py)."""

    @abc.abstractmethod
    def matching(self, matcher: Matcher, *, after: int = 0, before: int | None = None) -> list[Event]:
        """The events matching, in seq order (after < seq < before)."""

    def count_matching(self, matcher: Matcher) -> int:
        return len(self.matching(matcher))

    def first_matching(self, matcher: Matcher) -> Event | None:
        found = self.matching(matcher)
        return found[0] if found else None

    def last_matching(self, matcher: Matcher) -> Event | None:
        found = self.matching(matcher)
        return found[-1] if found else None


class TraceLog(MatchingQueries):
    def __init__(self, enter: Callable[[], contextlib.AbstractContextManager[object]] | None = None) -> None:
        self.lock = threading.RLock()
        # Entered around the listeners' calls (and as_listener()): what spec code in them needs
        # of the thread they run on.
        self._enter = enter or contextlib.nullcontext
        self.events: list[Event] = []
        self._by_type: dict[str, list[Event]] = {}
        self._by_service: dict[str, list[Event]] = {}
        # Field indexes are built on first use of a key, then kept up to date on append.
        self._by_field: dict[str, dict[str, list[Event]]] = {}
        self._clocks: dict[str, dict[str, int]] = {}
        self._listeners: list[Listener] = []
        self._unmirrored: set[str] = set()  # types of events whose native data is not in their fields
        self._dispatch = threading.local()
        self._grown = threading.Condition(self.lock)
        self._waiting = 0  # threads in wait_beyond(): append notifies only when there are some
        # Called on every read that goes past the indexes' callers (trace/properties.py sets it
        # while a temporal predicate runs, to learn that it read something it cannot track).
        self.on_read: Callable[[], None] | None = None

    # -- writing -------------------------------------------------------------------------------

    def append(self, ev: Event) -> Event:
        with self.lock:
            events = self.events
            ev.seq = len(events) + 1
            ev._trace = self
            svc = ev.service
            if svc:
                clock = self._clocks.get(svc)
                if clock is None:
                    clock = self._clocks[svc] = {}
                clock[svc] = clock.get(svc, 0) + 1
                ev.vclock = dict(clock)
            events.append(ev)
            if not ev.mirrored:
                self._unmirrored.add(ev.type)
            by_type = self._by_type.get(ev.type)
            if by_type is None:
                self._by_type[ev.type] = [ev]
            else:
                by_type.append(ev)
            by_svc = self._by_service.get(svc)
            if by_svc is None:
                self._by_service[svc] = [ev]
            else:
                by_svc.append(ev)
            if self._by_field:
                fields = ev.fields
                for key, index in self._by_field.items():
                    value = fields.get(key)
                    if value is not None:
                        index.setdefault(value, []).append(ev)
            if self._listeners:
                self._dispatch.active = True
                try:
                    with self._enter():
                        for listener in self._listeners:
                            listener(ev)
                finally:
                    self._dispatch.active = False
            if self._waiting:
                self._grown.notify_all()
        return ev

    def wait_beyond(self, seen: int, timeout: float) -> bool:
        """Wait until the trace holds more than `seen` events (True), or `timeout` seconds (False)."""
        with self.lock:
            if len(self.events) > seen:
                return True
            self._waiting += 1
            try:
                return self._grown.wait_for(lambda: len(self.events) > seen, max(timeout, 0.0))
            finally:
                self._waiting -= 1

    def dispatching(self) -> bool:
        """True inside a listener (a monitor) on this thread: queries must not wait for barriers."""
        return bool(getattr(self._dispatch, "active", False))

    @contextlib.contextmanager
    def as_listener(self) -> Iterator[None]:
        """Run code as a listener runs: under the lock, with dispatching() true, so that spec code
        in it reads the trace as it is instead of waiting for a barrier (which needs the lock)."""
        with self.lock, self._enter():
            outer = self.dispatching()
            self._dispatch.active = True
            try:
                yield
            finally:
                self._dispatch.active = outer

    def merge_clock(self, into: str, source: str) -> None:
        """Element-wise max of `source`'s clock into `into`'s (a message from source reached into)."""
        with self.lock:
            src = self._clocks.get(source)
            if not src:
                return
            dst = self._clocks.setdefault(into, {})
            for k, v in src.items():
                if dst.get(k, 0) < v:
                    dst[k] = v

    def subscribe(self, listener: Listener) -> None:
        with self.lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self.lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    # -- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.events)

    def snapshot(self) -> list[Event]:
        with self.lock:
            return list(self.events)

    def select(
        self,
        filters: Mapping[str, str] | Filter | None = None,
        where: Callable[[Event], Any] | None = None,
    ) -> list[Event]:
        """Events matching all dict filters and the `where` predicate, in seq order.

        The scan starts from the smallest index that the exact filters and the `where` lambda's
        hint allow (_util/hints.py), so a query costs in proportion to what it can return."""
        flt = filters if isinstance(filters, Filter) else Filter.of(filters or {})
        if self.on_read is not None:
            self.on_read()
        with self.lock:
            keys = {(k if k in ("type", "service") else "." + k): v for k, v in flt.exact().items()}
            conds: dict[str, str] = {}
            complete = False
            data_keys: frozenset[str] = frozenset()
            hint = hint_for(where) if where is not None else None
            if hint is not None and where is not None:
                found = hint.conditions(where)
                if found is None:
                    return []
                conds, complete = found
                data_keys = hint.data_keys
                if data_keys and self._unmirrored:
                    pinned = keys.get("type", conds.get("type"))
                    if pinned is None or pinned in self._unmirrored:
                        # Some events' data is not mirrored in their fields (a mock event's data is
                        # the request body): equalities on data keys cannot pick them from an index.
                        conds = {k: v for k, v in conds.items() if k not in data_keys}
                        complete = False
                for key, value in conds.items():
                    if keys.setdefault(key, value) != value:
                        return []
            out: list[Event] = []
            match = flt.match if flt else None
            for ev in self._candidates(keys):
                if match is not None and not match(ev):
                    continue
                if conds and not _holds(ev, conds):
                    continue
                if where is None or (complete and not (data_keys and ev.has_native_data)) or where(ev):
                    out.append(ev)
            return out

    def matching(self, matcher: Matcher, *, after: int = 0, before: int | None = None) -> list[Event]:
        """Events matching, with after < seq < before, in seq order (a criteria matcher starts
        from the indexes)."""
        if self.on_read is not None:
            self.on_read()
        with self.lock:
            end = len(self.events) if before is None else min(before - 1, len(self.events))
            if matcher.filter is not None:
                return [e for e in self.select(matcher.filter) if after < e.seq <= end]
            return [e for e in self.events[max(after, 0) : max(end, 0)] if matcher.match(e)]

    def holds(self, ev: Event) -> bool:
        with self.lock:
            return 0 < ev.seq <= len(self.events) and self.events[ev.seq - 1] is ev

    def service_events(self, service: str) -> list[Event]:
        if self.on_read is not None:
            self.on_read()
        with self.lock:
            return list(self._by_service.get(service, _EMPTY))

    def between(self, after: int, before: int | None) -> list[Event]:
        """Events with after < seq < before (None: to the end)."""
        if self.on_read is not None:
            self.on_read()
        with self.lock:
            end = len(self.events) if before is None else max(before - 1, 0)
            return self.events[max(after, 0) : end]

    def causal_chain(self, ev: Event) -> list[Event]:
        """Every event whose vector clock precedes `ev`'s, in seq order. For each service `ev`'s
        clock knows, its first clock[service] events are exactly its events that precede `ev`."""
        if self.on_read is not None:
            self.on_read()
        with self.lock:
            found: list[Event] = []
            for svc, n in ev.vclock.items():
                found.extend(e for e in self._by_service.get(svc, _EMPTY)[:n] if e is not ev)
            found.sort(key=lambda e: e.seq)
            return [e for e in found if clock_before(e.vclock, ev.vclock)]

    def first(self, filters: Mapping[str, str] | Filter | None = None) -> Event | None:
        found = self.select(filters)
        return found[0] if found else None

    def _candidates(self, keys: Mapping[str, str]) -> list[Event]:
        """The shortest index list for the exact keys ("type", "service" or ".<field>")."""
        best: list[Event] | None = None
        for key, value in keys.items():
            if key == "type":
                found = self._by_type.get(value, _EMPTY)
            elif key == "service":
                found = self._by_service.get(value, _EMPTY)
            else:
                found = self._field_index(key[1:]).get(value, _EMPTY)
            if best is None or len(found) < len(best):
                best = found
                if not best:
                    break
        return self.events if best is None else best

    def _field_index(self, key: str) -> dict[str, list[Event]]:
        index = self._by_field.get(key)
        if index is None:
            index = {}
            for ev in self.events:
                value = ev.fields.get(key)
                if value is not None:
                    index.setdefault(value, []).append(ev)
            self._by_field[key] = index
        return index

    def nearest(self, flt: Filter, limit: int = 5) -> list[Event]:
        """The events that came closest to matching a filter (most keys matching, latest first)."""
        with self.lock:
            scored = [(flt.score(e), e.seq, e) for e in self.events[-2000:]]
        scored = [s for s in scored if s[0] > 0] or scored
        scored.sort(key=lambda s: (s[0], s[1]), reverse=True)
        return sorted((e for _, _, e in scored[:limit]), key=lambda e: e.seq)

    def tail(self, n: int, before_seq: int | None = None, skip: frozenset[str] = frozenset()) -> list[Event]:
        """The last `n` events before `before_seq`, leaving out those whose type is in `skip`."""
        with self.lock:
            end = len(self.events) if before_seq is None else max(before_seq - 1, 0)
            if not skip:
                return self.events[max(end - n, 0) : end]
            out: list[Event] = []
            for ev in reversed(self.events[max(end - 8 * n, 0) : end]):
                if ev.type not in skip:
                    out.append(ev)
                    if len(out) == n:
                        break
            return out[::-1]

    def extend(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.append(ev)


def _holds(ev: Event, conds: Mapping[str, str]) -> bool:
    for key, value in conds.items():
        if key == "type":
            if ev.type != value:
                return False
        elif key == "service":
            if ev.service != value:
                return False
        elif ev.fields.get(key[1:]) != value:
            return False
    return True
