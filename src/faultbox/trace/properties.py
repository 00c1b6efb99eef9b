"""Temporal properties (`eventually`, `always`) checked as the trace grows.

A PropertySet listens on a TraceLog, as the monitors do. A predicate gets a `trace` value (built by
the runner from a TrackingLog, so that this package needs nothing from the spec language) whose
queries are answered from per-matcher caches: each cache holds the events matching one matcher
and is extended as events arrive, each new event tested once against each matcher in use. While a
predicate runs, the caches it reads are recorded as its dependencies; after an event it is run
again only if that event entered one of them. A predicate is a function of what it read, so if
none of that changed its answer cannot have changed. A predicate that read the trace some other
way (events_between, causal_chain, an event's causal methods, the global builtins) is run again
after every event instead. `eventually(m)` with a matcher is its cache's first event: O(1).

Windows and anchors: an `eventually` is checked from body start, or from the first event matching
its anchor. An `always` is checked while its window is open: from its start (body_start, the
first "stable", or the first event matching a matcher) to its end, exclusive (the first end after
the start). The checking state lives here, one PropertySet per test run, never on the Property.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from faultbox.errors import PredicateOverdue, SpecFailure, TerminateBody, TestTimeout
from faultbox.model.event import Event
from faultbox.model.matcher import Matcher
from faultbox.model.temporal import BODY_END, BODY_START, Anchor, Property
from faultbox.trace.log import MatchingQueries, TraceLog
from faultbox.trace.overdue import CallWatch

Describer = Callable[[BaseException], tuple[str, str]]  # (message, "file:line")

SATISFIED, PENDING, VIOLATED, VACUOUS = "satisfied", "pending", "violated", "vacuous"
EXPECT, TERMINATE = "expect", "terminate_when"
_MAX_CACHES = 256  # matchers built from fresh lambdas at every call never repeat: stop caching them


class _Cache:
    """The events matching one matcher, in seq order, and the properties that read them."""

    __slots__ = ("dependents", "events", "matcher")

    def __init__(self, matcher: Matcher, events: list[Event]) -> None:
        self.matcher = matcher
        self.events = events
        self.dependents: dict[PropertyState, None] = {}  # ordered set


@dataclass(eq=False)
class PropertyState:
    prop: Property
    role: str = EXPECT
    status: str = PENDING
    at_seq: int | None = None
    message: str = ""
    location: str = ""  # where its predicate raised, when it did
    armed: bool = False  # eventually: its anchor has matched; always: its window is open
    opened_seq: int = 0
    closed: bool = False  # always: its window's end was reached
    every_event: bool = False  # its last run read something untracked
    deps: list[_Cache] = field(default_factory=list)
    triggers: list[_Cache] = field(default_factory=list)  # anchor caches, kept for its whole life
    queued: bool = False

    @property
    def done(self) -> bool:
        return self.status != PENDING or self.closed

    def to_dict(self) -> dict[str, Any]:
        p = self.prop
        out: dict[str, Any] = {
            "kind": p.kind,
            "location": str(p.location or ""),
            "status": self.status,
            "at_seq": self.at_seq,
            "role": self.role,
        }
        if self.message:
            out["message"] = self.message
        return out


class TrackingLog(MatchingQueries):
    """The trace as a predicate reads it: what a TraceView needs (spec.host.TraceQueries), answered
    from the PropertySet's caches where it can, and recording what was read."""

    def __init__(self, props: PropertySet) -> None:
        self._props = props
        self.log = props.log

    def matching(self, matcher: Matcher, *, after: int = 0, before: int | None = None) -> list[Event]:
        cache = self._props.read(matcher) if not after and before is None else None
        if cache is None:
            return self.log.matching(matcher, after=after, before=before)
        return cache.events

    def holds(self, ev: Event) -> bool:
        return self.log.holds(ev)

    def select(self, filters: Any = None, where: Callable[[Event], Any] | None = None) -> list[Event]:
        return self.log.select(filters, where)

    def between(self, after: int, before: int | None) -> list[Event]:
        return self.log.between(after, before)

    def causal_chain(self, ev: Event) -> list[Event]:
        return self.log.causal_chain(ev)

    def service_events(self, service: str) -> list[Event]:
        return self.log.service_events(service)


class PropertySet:
    """The properties of one test run. Every method takes the log's lock (appends hold it)."""

    def __init__(
        self,
        log: TraceLog,
        view: Callable[[TrackingLog], Any],
        describe: Describer,
        on_stop: Callable[[PropertyState], None] | None = None,
    ) -> None:
        self.log = log
        self._watch = CallWatch(PredicateOverdue)
        self.describe = describe
        self.on_stop = on_stop  # an always was violated, a predicate raised, or terminate_when held
        self.states: list[PropertyState] = []
        self.violation: PropertyState | None = None
        self.terminated: PropertyState | None = None
        self.started = False
        self.finished = False
        self.fired: set[str] = set()  # lifecycle anchors signalled so far
        self._trace = view(TrackingLog(self))
        self._caches: dict[Hashable, _Cache] = {}
        self._by_type: dict[str, list[_Cache]] = {}  # caches whose matcher pins one event type
        self._untyped: list[_Cache] = []
        self._every: dict[PropertyState, None] = {}  # armed states with untracked reads
        self._reading: PropertyState | None = None
        self._subscribed = False

    # -- registering and lifecycle -------------------------------------------------------------

    def add(self, prop: Property, role: str = EXPECT) -> PropertyState:
        st = PropertyState(prop, role)
        with self.log.as_listener():
            if not self._subscribed:
                self.log.subscribe(self._on_event)
                self._subscribed = True
            self.states.append(st)
            if self.finished:
                return st
            for anchor in (prop.anchor, _matcher(prop.start), _matcher(prop.end)):
                if anchor is not None:
                    cache = self._cache(anchor, keep=True)
                    cache.dependents[st] = None
                    st.triggers.append(cache)
            if self.started:
                self._advance(st)
        return st

    def signal(self, name: str) -> None:
        """A lifecycle anchor: body_start arms everything; body_end and stable open or close
        windows that name them."""
        with self.log.as_listener():
            if self.finished:
                return
            self.fired.add(name)
            if name == BODY_START:
                self.started = True
            for st in list(self.states):
                if st.done:
                    continue
                p = st.prop
                if p.kind == "always" and st.armed and p.end == name:
                    self._close(st)
                elif name == BODY_START or (p.kind == "always" and not st.armed and p.start == name):
                    self._advance(st)

    def finish(self, timed_out: bool) -> list[PropertyState]:
        """The body has ended: signal body_end, look at each eventually once more, stop listening,
        and settle every status. Returns the always properties whose window never opened."""
        self.signal(BODY_END)
        with self.log.as_listener():
            for st in self.states:
                if st.role == EXPECT and st.prop.kind == "eventually" and st.status == PENDING and st.armed:
                    self._evaluate(st)
            self.finished = True
            if self._subscribed:
                self.log.unsubscribe(self._on_event)
            vacuous = []
            for st in self.states:
                if st.role != EXPECT or st.prop.kind != "always" or st.status != PENDING:
                    continue
                if not st.armed and not st.closed:
                    st.status = VACUOUS
                    vacuous.append(st)
                elif st.closed or not timed_out:
                    st.status = SATISFIED
            return vacuous

    def expectations(self) -> list[PropertyState]:
        return [st for st in self.states if st.role == EXPECT]

    # -- what a predicate reads ---------------------------------------------------------------

    def read(self, matcher: Matcher) -> _Cache | None:
        """The cache for a matcher, recorded as a dependency of the predicate running (None: the
        matcher cannot be cached; the predicate is then run after every event)."""
        st = self._reading
        cache = self._cache(matcher)
        if st is None:
            return cache
        if cache is None:
            st.every_event = True
        elif cache not in st.deps:
            st.deps.append(cache)
        return cache

    def _cache(self, matcher: Matcher, keep: bool = False) -> _Cache:
        """The cache of a matcher, made on first use. `keep`: an anchor's, followed whatever the
        number of caches (a matcher without a key is then followed as itself)."""
        key = matcher.key
        if key is None and keep:
            key = ("object", id(matcher))  # the cache holds the matcher: the id stays its own
        cache = self._caches.get(key) if key is not None else None
        if cache is not None:
            return cache
        hook, self.log.on_read = self.log.on_read, None  # building a cache is not a predicate's read
        try:
            cache = _Cache(matcher, self.log.matching(matcher))
        finally:
            self.log.on_read = hook
        if key is None or (len(self._caches) >= _MAX_CACHES and not keep):
            # Uncacheable: answered by scanning. Followed only if some property depends on it.
            if self._reading is not None:
                self._reading.every_event = True
            return cache
        self._caches[key] = cache
        pinned = _pinned_type(matcher)
        if pinned is None:
            self._untyped.append(cache)
        else:
            self._by_type.setdefault(pinned, []).append(cache)
        return cache

    def _untracked(self) -> None:
        if self._reading is not None:
            self._reading.every_event = True

    # -- per event ----------------------------------------------------------------------------

    def _on_event(self, ev: Event) -> None:
        if self.finished:
            return
        dirty: list[PropertyState] = []
        typed = self._by_type.get(ev.type)
        if typed is not None:
            _extend(typed, ev, dirty)
        if self._untyped:
            _extend(self._untyped, ev, dirty)
        if not self.started or self._reading is not None:
            # Before the body starts nothing is checked; an event appended by a predicate itself
            # is in the caches, and its dependents are looked at after the next event.
            for st in dirty:
                st.queued = False
            return
        if self._every:
            for st in self._every:
                if not st.queued:
                    st.queued = True
                    dirty.append(st)
        for st in dirty:
            st.queued = False
            if not st.done:
                self._advance(st)

    def _advance(self, st: PropertyState) -> None:
        """Bring one property up to date with the trace (after an event or a lifecycle signal)."""
        p = st.prop
        if p.kind == "eventually":
            if not st.armed:
                if p.anchor is not None and not st.triggers[0].events:
                    return
                st.armed = True
            self._evaluate(st)
            return
        if not st.armed:
            if not self._window_opens(st):
                return
            st.armed = True
            st.opened_seq = len(self.log.events)
            if isinstance(p.start, Matcher):
                st.opened_seq = _matcher_cache(st, p.start).events[0].seq
        if isinstance(p.end, Matcher):
            end = _matcher_cache(st, p.end).events
            if end and end[-1].seq > st.opened_seq:  # the end came (the start event never ends it)
                self._close(st)
                return
        self._evaluate(st)

    def _window_opens(self, st: PropertyState) -> bool:
        start = st.prop.start
        if start is None or start == BODY_START:
            return self.started
        if isinstance(start, Matcher):
            return bool(_matcher_cache(st, start).events)
        return start in self.fired

    def _close(self, st: PropertyState) -> None:
        st.closed = True
        st.status = SATISFIED
        self._forget(st)

    def _evaluate(self, st: PropertyState) -> None:
        p = st.prop
        seq = len(self.log.events)
        if p.matcher is not None:
            cache = self._cache(p.matcher, keep=True)
            if not st.deps:
                st.deps.append(cache)
                cache.dependents[st] = None
            ok = bool(cache.events)
        else:
            ok = self._run_predicate(st)
            if st.status != PENDING:
                return
        if p.kind == "eventually" and ok:
            st.status, st.at_seq = SATISFIED, seq
            self._forget(st)
            if st.role == TERMINATE and self.terminated is None and self.violation is None:
                self.terminated = st
                self._stop(st)
        elif p.kind == "always" and not ok and st.role == EXPECT:
            st.status, st.at_seq = VIOLATED, seq
            st.message = f"became false after event #{seq}" + _shown(self.log.events[-1] if seq else None)
            self._forget(st)
            if self.violation is None:
                self.violation = st
                self._stop(st)
        elif p.kind == "always" and ok and st.role == TERMINATE:
            st.status, st.at_seq = SATISFIED, seq  # a condition to stop at: it held
            self._forget(st)
            if self.terminated is None and self.violation is None:
                self.terminated = st
                self._stop(st)

    def _run_predicate(self, st: PropertyState) -> bool:
        assert st.prop.predicate is not None
        for cache in st.deps:
            cache.dependents.pop(st, None)
        st.deps = []
        st.every_event = False
        self._reading = st
        hook, self.log.on_read = self.log.on_read, self._untracked
        try:
            with self._watch.watching():
                value = st.prop.predicate(self._trace)
        except TerminateBody:
            raise  # terminate_when held: the body's own interruption, landing while a predicate ran
        except TestTimeout as exc:
            # The deadline reached the predicate itself (the watchdog's PredicateOverdue, or the
            # body's own timeout on the body's thread): a predicate that does not return fails its
            # test at its line, whichever thread it ran on.
            return self._raised(st, exc if isinstance(exc, PredicateOverdue) else PredicateOverdue())
        except (Exception, SpecFailure) as exc:  # a predicate that raises fails its test, at its line
            return self._raised(st, exc)
        finally:
            self._reading = None
            self.log.on_read = hook
        for cache in st.deps:
            cache.dependents[st] = None
        if st.every_event:
            self._every[st] = None
        else:
            self._every.pop(st, None)
        return bool(value)

    def _raised(self, st: PropertyState, exc: BaseException) -> bool:
        message, location = self.describe(exc)
        st.status, st.at_seq = VIOLATED, len(self.log.events)
        st.message, st.location = f"raised: {message}", location
        self._forget(st)
        if self.violation is None:
            self.violation = st
            self._stop(st)
        return False

    def interrupt_overdue(self, deadline: float) -> bool:
        """Stop a predicate still running past the deadline: it fails its test, as a raise does."""
        return self._watch.interrupt_overdue(deadline)

    def _forget(self, st: PropertyState) -> None:
        """A settled property is no longer followed."""
        for cache in (*st.deps, *st.triggers):
            cache.dependents.pop(st, None)
        self._every.pop(st, None)

    def _stop(self, st: PropertyState) -> None:
        if self.on_stop is not None:
            self.on_stop(st)


def _extend(caches: list[_Cache], ev: Event, dirty: list[PropertyState]) -> None:
    for cache in caches:
        if cache.matcher.match(ev):
            cache.events.append(ev)
            for st in cache.dependents:
                if not st.queued:
                    st.queued = True
                    dirty.append(st)


def _shown(ev: Event | None) -> str:
    if ev is None:
        return ""
    return f" ({ev.type} {ev.service})" if ev.service else f" ({ev.type})"


def _matcher(anchor: Anchor | None) -> Matcher | None:
    return anchor if isinstance(anchor, Matcher) else None


def _matcher_cache(st: PropertyState, m: Matcher) -> _Cache:
    for cache in st.triggers:
        if cache.matcher is m or (m.key is not None and cache.matcher.key == m.key):
            return cache
    raise AssertionError("an anchor's cache is made when its property is added")


def _pinned_type(m: Matcher) -> str | None:
    """The one event type a criteria matcher accepts, if it names one exactly."""
    if m.filter is None:
        return None
    return m.filter.exact().get("type")
