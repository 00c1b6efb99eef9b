"""Vector-clock relations, causal queries and matchers on constructed events and traces."""

from __future__ import annotations

import threading
import time

import pytest

from faultbox.model.event import Event, EventList, clock_before
from faultbox.model.matcher import EventArgError, Matcher, to_matcher, window_seconds
from faultbox.trace.log import TraceLog


def ev(service: str, clock: dict[str, int], ts: float = 0.0, type: str = "x", **fields: str) -> Event:
    e = Event(type, service, fields, ts=ts)
    e.vclock = clock
    return e


def test_relations_on_known_clocks() -> None:
    a = ev("api", {"api": 1})
    b = ev("api", {"api": 2})
    c = ev("db", {"db": 1})
    d = ev("db", {"db": 2, "api": 2, "test": 3})
    assert a.happens_before(b) and b.happens_after(a)
    assert not b.happens_before(a) and not a.happens_after(b)
    assert a.happens_before(d) and b.happens_before(d)  # through a merge
    assert a.concurrent_with(c) and c.concurrent_with(a) and b.concurrent_with(c)
    assert not a.concurrent_with(d)
    assert c.happens_before(d)
    assert not a.happens_before(a) and not a.concurrent_with(a)
    # an equal clock is not strictly before; a clock with a bigger entry elsewhere is not before
    assert not clock_before({"api": 2}, {"api": 2})
    assert not clock_before({"api": 3}, {"api": 2, "db": 9})
    assert clock_before({"api": 2}, {"api": 2, "db": 1})


def test_events_without_a_clock_are_ordered_with_nothing() -> None:
    notice = ev("", {})
    a = ev("api", {"api": 1})
    assert not notice.happens_before(a) and not a.happens_before(notice)
    assert notice.concurrent_with(a)


def test_service_correlation_and_duration() -> None:
    a = ev("api", {"api": 1}, ts=10.0, correlation_id="c1")
    b = ev("db", {"db": 1}, ts=10.25, correlation_id="c1")
    c = ev("api", {"api": 2}, ts=11.0)
    assert a.same_correlation_as(b) and not a.same_correlation_as(c) and not c.same_correlation_as(ev("", {}))
    assert a.same_service_as(c) and not a.same_service_as(b)
    assert b.duration_since(a) == 250_000_000
    assert a.duration_since(b) == -250_000_000


def test_a_non_event_argument_is_refused() -> None:
    a = ev("api", {"api": 1})
    for method in ("happens_before", "happens_after", "concurrent_with", "duration_since", "same_service_as"):
        with pytest.raises(EventArgError, match=rf"e\.{method}\(\): the argument must be an event, got string"):
            getattr(a, method)("api")
    with pytest.raises(EventArgError, match="got NoneType"):
        a.happens_before(None)  # type: ignore[arg-type]


def steps_trace() -> tuple[TraceLog, list[Event]]:
    """api works, a step returns from api, then a step reaches db; db's banner came first."""
    log = TraceLog()
    banner = log.append(Event("stdout", "db", {"raw": "db up"}, ts=1.0))
    send_api = log.append(Event("step_send", "api", {}, ts=2.0))
    work = log.append(Event("stdout", "api", {"raw": "working"}, ts=2.1))
    recv_api = log.append(Event("step_recv", "api", {}, ts=2.2))
    log.merge_clock("test", "api")
    log.merge_clock("db", "test")
    send_db = log.append(Event("step_send", "db", {}, ts=3.0))
    row = log.append(Event("wal", "db", {"table": "orders"}, ts=3.5))
    return log, [banner, send_api, work, recv_api, send_db, row]


def test_clocks_through_a_step() -> None:
    log, (banner, send_api, work, recv_api, send_db, row) = steps_trace()
    assert work.happens_before(row) and recv_api.happens_before(send_db)
    assert banner.concurrent_with(work) and banner.concurrent_with(recv_api)
    assert banner.happens_before(row)
    assert log.causal_chain(row) == [banner, send_api, work, recv_api, send_db]
    assert log.causal_chain(work) == [send_api]
    assert log.causal_chain(banner) == []


def test_directly_caused_by() -> None:
    _log, (banner, _send_api, _work, _recv_api, send_db, row) = steps_trace()
    assert send_db.directly_caused_by({"type": "step_recv"})
    assert send_db.directly_caused_by({"raw": "db up"})  # db's previous event
    assert not send_db.directly_caused_by({"raw": "working"})  # recv_api lies between
    assert row.directly_caused_by({"type": "step_send", "service": "db"})
    assert not row.directly_caused_by({"type": "step_recv"})  # send_db lies between
    assert not banner.directly_caused_by(Matcher.criteria({}))


def test_preceded_and_followed_by() -> None:
    _log, (banner, _send_api, work, _recv_api, _send_db, row) = steps_trace()
    assert row.preceded_by({"raw": "working"}) and not banner.preceded_by({"raw": "working"})
    assert work.followed_by(Matcher.criteria({"type": "wal"})) and not row.followed_by({"type": "wal"})
    assert work.followed_by(lambda e: e.service == "db")
    assert row.preceded_by_within({"raw": "working"}, "1.4s") and not row.preceded_by_within({"raw": "working"}, "1s")
    assert work.followed_by_within({"type": "wal"}, 1_400_000_000)  # nanoseconds, as duration() gives
    assert not work.followed_by_within({"type": "wal"}, "1s")
    with pytest.raises(EventArgError, match="must not be negative"):
        work.followed_by_within({"type": "wal"}, "-1s")
    with pytest.raises(EventArgError, match="expected a matcher"):
        work.preceded_by("wal")
    # an event outside any trace has nothing around it
    assert not ev("api", {"api": 1}).preceded_by({})


def test_matchers() -> None:
    e = Event("stdout", "api", {"level": "error", "path": "/a/b"})
    assert Matcher.criteria({"type": "stdout", "level": "err*"}).match(e)
    assert Matcher.criteria({"service": ""}).match(e)  # an empty value matches anything
    assert not Matcher.criteria({"level": "info"}).match(e)
    wal = Matcher.criteria({"type": "wal"})
    out = Matcher.criteria({"type": "stdout"})
    assert Matcher.any_of([wal, out]).match(e) and not Matcher.all_of([wal, out]).match(e)
    assert Matcher.all_of([]).match(e) and not Matcher.never().match(e)
    assert out(e)  # usable as a function of the event
    assert to_matcher({"level": "error"}, "x").match(e) and to_matcher(lambda v: v.type == "stdout", "x").match(e)
    assert repr(Matcher.criteria({"type": "wal"})) == '<matcher event(type="wal")>'
    with pytest.raises(EventArgError, match=r"x: expected a matcher .* got int"):
        to_matcher(3, "x")
    with pytest.raises(EventArgError, match="level= must be a string"):
        to_matcher({"level": [1]}, "x")
    assert window_seconds("500ms", "w") == 0.5 and window_seconds(0, "w") == 0
    with pytest.raises(EventArgError, match="must be a duration"):
        window_seconds(1.5, "w")


def test_event_list() -> None:
    a, b = Event("x", "s", {"n": "1"}), Event("x", "s", {"n": "2"})
    found = EventList([a, b])
    assert found.first is a and found.last is b and found.count == 2
    assert found.map(lambda e: e.n) == ["1", "2"]
    assert found.filter(lambda e: e.n == "2") == [b] and isinstance(found.filter(lambda e: True), EventList)
    assert found.reduce(lambda acc, e: acc + int(e.n), 0) == 3
    assert EventList().first is None and EventList().last is None and EventList().count == 0


def test_matching_and_between_use_seq_bounds() -> None:
    log, (banner, _send_api, work, recv_api, send_db, row) = steps_trace()
    m = Matcher.criteria({"service": "db"})
    assert log.matching(m) == [banner, send_db, row]
    assert log.matching(m, after=banner.seq, before=row.seq) == [send_db]
    assert log.matching(Matcher("f", lambda e: e.service == "db"), after=1) == [send_db, row]
    assert log.between(work.seq, send_db.seq) == [recv_api]
    assert log.between(send_db.seq, work.seq) == []
    assert log.between(0, None) == log.events
    assert log.holds(row) and not log.holds(Event("x", "s", {}))


def test_wait_beyond_wakes_on_append() -> None:
    log = TraceLog()
    assert not log.wait_beyond(0, 0.05)
    timer = threading.Timer(0.1, lambda: log.append(Event("x", "s", {})))
    timer.start()
    start = time.monotonic()
    assert log.wait_beyond(0, 10.0)
    assert time.monotonic() - start < 5.0
    assert log.wait_beyond(0, 0)  # already grown
    timer.join()
