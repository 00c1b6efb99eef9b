"""The trace API and the temporal waits (the reference's RFC-041 names and signatures).

    event(m) last(m) first(m) count(m) events(m)          queries on the test's trace so far
    events_between(start, end)  events_within(m, window, of=None)  causal_chain(e)
    duration("200ms")                                       nanoseconds, for e.duration_since(other)
    await_event(m, timeout=None)  await_stable(quiescence_window="1s", ignore=None)
    match.event(**criteria)  match.any(*m)  match.all(*m)  match.never()

`m` is a matcher, a function of the event, a dict of filters, or criteria as keywords. The same
queries are methods of a `trace` value (TraceView), which predicates over the whole trace receive.
Each builtin translates its call into a query or a wait on the Host; the trace does the work.
"""

from __future__ import annotations

from typing import Any

from faultbox._util.durations import DurationError, parse_duration
from faultbox.errors import SpecFailure
from faultbox.model.event import Event, EventList
from faultbox.model.matcher import EventArgError, Matcher, criteria_text, kind, to_matcher, window_seconds
from faultbox.spec import host as host_mod
from faultbox.spec.args import ArgError, register_type_name
from faultbox.spec.builtins import builtin
from faultbox.spec.registry import SpecBuilder

register_type_name(Matcher, "matcher")
register_type_name(EventList, "list")
register_type_name(Event, "event")


def matcher_of(value: Any, criteria: dict[str, Any], what: str) -> Matcher:
    """One positional matcher (or function, or dict), or criteria as keywords; neither matches all."""
    if value is not None and criteria:
        raise ArgError(
            f"{what}: give a matcher or criteria keywords, not both",
            "fold the keywords into match.event(...), or drop the positional matcher",
        )
    if value is not None:
        return to_matcher(value, what)
    return Matcher.criteria({k: criteria_text(v, what, k) for k, v in criteria.items()})


def _anchor(trace: host_mod.TraceQueries, value: Any, what: str, name: str) -> Event | None:
    if value is None:
        return None
    if not isinstance(value, Event):
        raise ArgError(
            f"{what}: {name} must be an event of this test's trace or None (an open end), got {kind(value)}",
            "pass an event from first(), last(), events() or await_event()",
        )
    if not trace.holds(value):
        raise ArgError(
            f"{what}: {name} is an unknown anchor: event #{value.seq} ({value.type}) is not in this test's trace",
            "anchor on an event of the running test (events of an earlier test are not in its trace)",
        )
    return value


class TraceView:
    """The trace API over one trace: what the builtins of this module ask, and what a predicate
    over the whole trace (eventually/always) receives as `trace`."""

    __slots__ = ("_made", "log")

    def __init__(self, log: host_mod.TraceQueries) -> None:
        self.log = log
        # Criteria matchers already built: a predicate over the trace runs after many events and
        # builds the same ones each time (building one costs more than answering from a cache).
        self._made: dict[tuple[tuple[str, str], ...], Matcher] = {}

    def _matcher(self, matcher: Any, criteria: dict[str, Any], what: str) -> Matcher:
        if matcher is None and criteria and len(self._made) < 1024:
            key = tuple(criteria.items())
            if all(type(v) is str for _, v in key):
                made = self._made.get(key)
                if made is None:
                    made = self._made[key] = matcher_of(None, criteria, what)
                return made
        return matcher_of(matcher, criteria, what)

    def events(self, matcher: Any = None, **criteria: Any) -> EventList:
        return EventList(self.log.matching(self._matcher(matcher, criteria, "trace.events()")))

    def event(self, matcher: Any = None, **criteria: Any) -> Event | None:
        """The latest matching event, or None."""
        return self.log.last_matching(self._matcher(matcher, criteria, "trace.event()"))

    last = event

    def first(self, matcher: Any = None, **criteria: Any) -> Event | None:
        return self.log.first_matching(self._matcher(matcher, criteria, "trace.first()"))

    def count(self, matcher: Any = None, **criteria: Any) -> int:
        return self.log.count_matching(self._matcher(matcher, criteria, "trace.count()"))

    def events_between(self, start: Any, end: Any) -> EventList:
        a = _anchor(self.log, start, "events_between()", "start")
        b = _anchor(self.log, end, "events_between()", "end")
        return EventList(self.log.between(a.seq if a else 0, b.seq if b else None))

    def events_within(self, matcher: Any, window: Any, of: Any = None) -> EventList:
        m = to_matcher(matcher, "events_within()")
        limit = window_seconds(window, "events_within()")
        anchor = _anchor(self.log, of, "events_within()", "of")
        found = self.log.matching(m)
        if anchor is None:
            return EventList(found)
        return EventList(e for e in found if abs(e.ts - anchor.ts) <= limit)

    def causal_chain(self, event: Any) -> EventList:
        ev = _anchor(self.log, event, "causal_chain()", "the event")
        if ev is None:
            raise ArgError("causal_chain(): the event must be an event, got NoneType")
        return EventList(self.log.causal_chain(ev))

    def __repr__(self) -> str:
        return "<trace>"


register_type_name(TraceView, "trace")


def trace_view(what: str) -> TraceView:
    return TraceView(host_mod.require(what).trace())


@builtin("event", "matcher: any = None, **criteria")
def event(builder: SpecBuilder, matcher: Any, criteria: dict[str, Any]) -> Event | None:
    """The latest event matching, or None."""
    return trace_view("event()").events(matcher_of(matcher, criteria, "event()")).last


@builtin("last", "matcher: any = None, **criteria")
def last(builder: SpecBuilder, matcher: Any, criteria: dict[str, Any]) -> Event | None:
    return trace_view("last()").events(matcher_of(matcher, criteria, "last()")).last


@builtin("first", "matcher: any = None, **criteria")
def first(builder: SpecBuilder, matcher: Any, criteria: dict[str, Any]) -> Event | None:
    return trace_view("first()").events(matcher_of(matcher, criteria, "first()")).first


@builtin("count", "matcher: any = None, **criteria")
def count(builder: SpecBuilder, matcher: Any, criteria: dict[str, Any]) -> int:
    return len(trace_view("count()").events(matcher_of(matcher, criteria, "count()")))


@builtin("events_between", "start: any, end: any")
def events_between(builder: SpecBuilder, start: Any, end: Any) -> EventList:
    return trace_view("events_between()").events_between(start, end)


@builtin("events_within", "matcher: any, window: any, of: any = None")
def events_within(builder: SpecBuilder, matcher: Any, window: Any, of: Any) -> EventList:
    return trace_view("events_within()").events_within(matcher, window, of)


@builtin("causal_chain", "event: any")
def causal_chain(builder: SpecBuilder, event: Any) -> EventList:
    return trace_view("causal_chain()").causal_chain(event)


@builtin("duration", "text: str")
def duration(builder: SpecBuilder, text: str) -> int:
    """Nanoseconds: duration("200ms") == 200000000 (compare with e.duration_since(other))."""
    try:
        return round(parse_duration(text) * 1e9)
    except DurationError as exc:
        raise ArgError(f"duration(): {exc}") from None


def _wall_clock(clock: str, what: str) -> None:
    if clock != "wall":
        raise ArgError(
            f'{what}: clock="{clock}" is not supported: faultbox runs services on the real clock',
            'drop clock= (or write clock="wall")',
        )


@builtin("await_event", "matcher: any = None, *, timeout: duration? = None, clock: str = 'wall', **criteria")
def await_event(
    builder: SpecBuilder, matcher: Any, timeout: float | None, clock: str, criteria: dict[str, Any]
) -> Event:
    """The earliest event of the test's trace that matches, waiting for one if there is none yet."""
    what = "await_event()"
    host = host_mod.require(what)
    _wall_clock(clock, what)
    if matcher is None and not criteria:
        raise ArgError(
            f"{what}: nothing to wait for: give a matcher, a function of the event or criteria",
            'write await_event(match.event(type="stdout", service="api")) or await_event(type="wal")',
        )
    if timeout is not None and timeout < 0:
        raise ArgError(f"{what}: timeout must not be negative")
    m = matcher_of(matcher, criteria, what)
    log = host.trace()
    found = host.wait_until(lambda: EventList(log.matching(m)).first, timeout, what)
    if found is None:
        raise SpecFailure(
            f"await_event: no event matched {m.name} within {timeout:g}s",
            {"assertion": "await_event", "expected": m.name, "actual": "no matching event"},
        )
    return found


@builtin("await_stable", "*, quiescence_window: duration = '1s', ignore: any = None, clock: str = 'wall'")
def await_stable(builder: SpecBuilder, quiescence_window: float, ignore: Any, clock: str) -> None:
    """Wait until no event (but those `ignore` matches) has entered the trace for the window."""
    what = "await_stable()"
    host = host_mod.require(what)
    _wall_clock(clock, what)
    if quiescence_window <= 0:
        raise ArgError(f"{what}: quiescence_window must be longer than 0", 'write e.g. quiescence_window="500ms"')
    skip = to_matcher(ignore, f"{what}: ignore=") if ignore is not None else None
    host.await_quiet(quiescence_window, skip.match if skip is not None else None)
    host.signal_anchor("stable")  # always(..., between=(..., "stable")) windows move here


def _matchers(values: tuple[Any, ...], what: str) -> list[Matcher]:
    out = []
    for i, value in enumerate(values):
        if not isinstance(value, Matcher) and not callable(value) and not isinstance(value, dict):
            raise EventArgError(
                f"{what}: argument {i + 1} must be a matcher (match.event(...)), got {kind(value)}",
                'write e.g. match.any(match.event(type="wal"), match.event(type="topic"))',
            )
        out.append(to_matcher(value, what))
    return out


@builtin("_match_event", "**criteria")
def match_event(builder: SpecBuilder, criteria: dict[str, Any]) -> Matcher:
    return Matcher.criteria({k: criteria_text(v, "match.event()", k) for k, v in criteria.items()})


@builtin("_match_any", "*matchers")
def match_any(builder: SpecBuilder, matchers: tuple[Any, ...]) -> Matcher:
    return Matcher.any_of(_matchers(matchers, "match.any()"))


@builtin("_match_all", "*matchers")
def match_all(builder: SpecBuilder, matchers: tuple[Any, ...]) -> Matcher:
    return Matcher.all_of(_matchers(matchers, "match.all()"))


@builtin("_match_never", "")
def match_never(builder: SpecBuilder) -> Matcher:
    return Matcher.never()
