"""The property logic on a real TraceLog with hand-made events: when eventually/always settle,
windows and anchors, per-run state, and that predicates run only when what they read changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faultbox.errors import SourceLocation, SpecFailure
from faultbox.model.event import Event
from faultbox.model.matcher import Matcher
from faultbox.model.temporal import Property
from faultbox.spec.builtins.temporal import TraceView
from faultbox.trace.log import TraceLog
from faultbox.trace.properties import TERMINATE, PropertySet, PropertyState

LOC = SourceLocation("/x/spec.star", 7)


def _describe(exc: BaseException) -> tuple[str, str]:
    return str(exc), "spec.star:99"


class Run:
    def __init__(self) -> None:
        self.log = TraceLog()
        self.stops: list[PropertyState] = []
        self.props = PropertySet(self.log, TraceView, _describe, self.stops.append)

    def add(self, prop: Property, role: str = "expect") -> PropertyState:
        return self.props.add(prop, role)

    def emit(self, type: str, service: str = "a", **fields: str) -> Event:
        return self.log.append(Event(type, service, fields))


def ev(**criteria: str) -> Matcher:
    return Matcher.criteria(criteria)


def eventually(pred: Any = None, anchor: Matcher | None = None, matcher: Matcher | None = None) -> Property:
    return Property("eventually", predicate=pred, matcher=matcher, anchor=anchor, location=LOC)


def always(pred: Callable[[Any], Any], start: Any = None, end: Any = None) -> Property:
    return Property("always", predicate=pred, start=start, end=end, location=LOC)


def test_eventually_is_checked_as_events_arrive_and_stays_satisfied() -> None:
    r = Run()
    st = r.add(eventually(lambda t: t.count(type="done") >= 2))
    r.props.signal("body_start")
    r.emit("done")
    assert st.status == "pending"
    r.emit("other")
    second = r.emit("done")
    assert st.status == "satisfied" and st.at_seq == second.seq
    r.emit("undo")
    r.props.finish(timed_out=False)
    assert st.status == "satisfied"


def test_nothing_is_checked_before_body_start() -> None:
    r = Run()
    st = r.add(always(lambda t: t.count(type="bad") == 0))
    r.emit("bad")  # during setup: the window opens at body start, and the trace then has it
    assert st.status == "pending" and not r.stops
    r.props.signal("body_start")
    assert st.status == "violated" and st.at_seq == 1 and r.stops == [st]


def test_always_fails_at_the_event_that_made_it_false() -> None:
    r = Run()
    st = r.add(always(lambda t: t.count(type="err") < 2))
    r.props.signal("body_start")
    r.emit("err")
    r.emit("ok")
    bad = r.emit("err", "b")
    assert st.status == "violated" and st.at_seq == bad.seq
    assert "after event #3" in st.message
    assert r.props.violation is st and r.stops == [st]
    r.emit("err")  # settled: not evaluated again
    assert r.stops == [st]


def test_a_predicate_runs_only_when_an_event_it_read_arrives() -> None:
    r = Run()
    calls: list[int] = []

    def pred(t: Any) -> bool:
        calls.append(1)
        return t.count(match_done) < 100

    match_done = ev(type="done")
    r.add(always(pred))
    r.props.signal("body_start")
    base = len(calls)
    for _ in range(50):
        r.emit("noise")
    assert len(calls) == base
    r.emit("done")
    assert len(calls) == base + 1


def test_a_predicate_that_reads_the_trace_untracked_runs_after_every_event() -> None:
    r = Run()
    calls: list[int] = []

    def pred(t: Any) -> bool:
        calls.append(1)
        return len(t.events_between(None, None)) < 5

    st = r.add(always(pred))
    r.props.signal("body_start")
    for _ in range(4):
        r.emit("noise")
    assert len(calls) == 5 and st.status == "pending"
    r.emit("noise")
    assert st.status == "violated" and st.at_seq == 5


def test_causal_methods_count_as_untracked_reads() -> None:
    r = Run()
    st = r.add(always(lambda t: t.first(type="a") is None or not t.first(type="a").followed_by(ev(type="b"))))
    r.props.signal("body_start")
    r.emit("a")
    r.emit("x")
    assert st.status == "pending"
    r.emit("b")  # read only through the event's followed_by(): still seen
    assert st.status == "violated"


def test_eventually_of_a_matcher() -> None:
    r = Run()
    st = r.add(eventually(matcher=ev(type="ready", service="db")))
    r.props.signal("body_start")
    r.emit("ready", "api")
    assert st.status == "pending"
    found = r.emit("ready", "db")
    assert st.status == "satisfied" and st.at_seq == found.seq


def test_eventually_waits_for_its_anchor() -> None:
    r = Run()
    calls: list[int] = []

    def pred(t: Any) -> bool:
        calls.append(1)
        return True

    st = r.add(eventually(pred, anchor=ev(type="go")))
    r.props.signal("body_start")
    r.emit("x")
    assert calls == [] and st.status == "pending"
    r.emit("go")
    assert st.status == "satisfied" and calls == [1]


def test_pending_eventually_at_the_end() -> None:
    r = Run()
    st = r.add(eventually(lambda t: t.event(type="never") is not None))
    r.props.signal("body_start")
    r.emit("x")
    r.props.finish(timed_out=False)
    assert st.status == "pending"
    assert st.to_dict() == {"kind": "eventually", "location": "/x/spec.star:7", "status": "pending",
                            "at_seq": None, "role": "expect"}  # fmt: skip


def test_window_between_matchers_is_half_open() -> None:
    r = Run()
    st = r.add(always(lambda t: t.count(type="err") == 0, start=ev(type="open"), end=ev(type="close")))
    r.props.signal("body_start")
    r.emit("err")  # before the window: the predicate reads the whole trace once the window opens
    r2 = Run()
    st2 = r2.add(always(lambda t: t.count(type="err") == 0, start=ev(type="open"), end=ev(type="close")))
    r2.props.signal("body_start")
    r2.emit("x")
    r2.emit("open")
    r2.emit("close")
    r2.emit("err")  # after the window closed
    r2.props.finish(timed_out=False)
    assert st2.status == "satisfied"
    r.emit("open")
    assert st.status == "violated"


def test_window_end_not_reached() -> None:
    for timed_out, status in ((True, "pending"), (False, "satisfied")):
        r = Run()
        st = r.add(always(lambda t: True, start="body_start", end=ev(type="close")))
        r.props.signal("body_start")
        r.emit("x")
        r.props.finish(timed_out=timed_out)
        assert st.status == status


def test_stable_anchors() -> None:
    r = Run()
    st = r.add(always(lambda t: t.count(type="err") == 0, start="stable", end="stable"))
    r.props.signal("body_start")
    r.emit("err")
    assert st.status == "pending"  # not open yet
    r2 = Run()
    st2 = r2.add(always(lambda t: t.count(type="err") == 0, start="stable", end="stable"))
    r2.props.signal("body_start")
    r2.props.signal("stable")
    r2.emit("ok")
    r2.props.signal("stable")
    r2.emit("err")
    assert st2.status == "satisfied"
    r.props.signal("stable")
    assert st.status == "violated"


def test_a_window_that_never_opened_is_vacuous() -> None:
    r = Run()
    st = r.add(always(lambda t: False, start=ev(type="never")))
    r.props.signal("body_start")
    r.emit("x")
    vacuous = r.props.finish(timed_out=False)
    assert vacuous == [st] and st.status == "vacuous"


def test_terminate_when_stops_once() -> None:
    r = Run()
    st = r.add(eventually(lambda t: t.count(type="tick") >= 3), role=TERMINATE)
    r.props.signal("body_start")
    for _ in range(5):
        r.emit("tick")
    assert r.props.terminated is st and r.stops == [st] and st.at_seq == 3


def test_a_predicate_that_raises_fails_at_its_line() -> None:
    def pred(t: Any) -> bool:
        raise SpecFailure("boom")

    r = Run()
    st = r.add(eventually(pred))
    r.props.signal("body_start")
    assert st.status == "violated" and st.message == "raised: boom" and st.location == "spec.star:99"


def test_state_is_per_run_not_on_the_value() -> None:
    shared = eventually(lambda t: t.count(type="done") > 0)
    r1 = Run()
    st1 = r1.add(shared)
    r1.props.signal("body_start")
    r1.emit("done")
    assert st1.status == "satisfied"
    r2 = Run()
    st2 = r2.add(shared)
    r2.props.signal("body_start")
    r2.emit("x")
    r2.props.finish(timed_out=False)
    assert st2.status == "pending"


def test_a_property_added_during_the_body_sees_the_trace_so_far() -> None:
    r = Run()
    r.props.signal("body_start")
    r.emit("done")
    st = r.add(eventually(lambda t: t.count(type="done") == 1))
    assert st.status == "satisfied"


def test_fresh_matchers_at_every_call_share_one_cache() -> None:
    r = Run()
    r.add(always(lambda t: t.count(Matcher.any_of([ev(type="a"), ev(type="b")])) < 10))
    r.add(always(lambda t: t.count(type="a") < 10))
    r.props.signal("body_start")
    for _ in range(20):
        r.emit("c")
    assert len(r.props._caches) == 2
