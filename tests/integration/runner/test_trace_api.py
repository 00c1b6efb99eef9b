"""The trace API, the causal methods and the temporal waits, through real spec runs: two services
whose events are ordered through steps, and others that are concurrent."""

from __future__ import annotations

from support import free_port, svc_decl

OBSERVE = ", observe = [observe.stdout()]"


def two_services() -> str:
    return svc_decl("a", free_port(), OBSERVE, env='"BANNER": "a up"') + svc_decl(
        "b", free_port(), OBSERVE, env='"BANNER": "b up"'
    )


def test_steps_order_two_services_and_the_rest_is_concurrent(run) -> None:
    spec = (
        two_services()
        + """
def test_causal():
    assert_eq(a.main.send("LOG hello-a"), "ok")
    assert_eq(b.main.send("LOG hello-b"), "ok")
    la = first(type="stdout", service="a", raw="hello-a")
    lb = last(match.event(type="stdout", service="b", raw="hello-b"))
    assert_true(la.happens_before(lb))
    assert_true(lb.happens_after(la))
    assert_true(not lb.happens_before(la))
    assert_true(not la.concurrent_with(lb))
    # the banners were printed before any step reached either service: concurrent
    ba = first(type="stdout", service="a", raw="a up")
    bb = first(type="stdout", service="b", raw="b up")
    assert_true(ba.concurrent_with(bb))
    assert_true(not ba.happens_before(bb) and not bb.happens_before(ba))
    assert_true(ba.happens_before(lb))  # a's banner precedes what a did before the step returned
    # the trace around an event
    assert_true(lb.preceded_by(match.event(type="stdout", service="a")))
    assert_true(la.followed_by({"service": "b", "type": "stdout"}))
    assert_true(not lb.followed_by(lambda e: e.type == "stdout" and e.service == "a"))
    assert_true(la.followed_by_within(match.event(service="b", raw="hello-b"), "30s"))
    assert_true(not lb.preceded_by_within(match.event(service="a", raw="hello-a"), 0))
    assert_true(lb.duration_since(la) > 0 and lb.duration_since(la) < duration("30s"))
    assert_true(la.duration_since(lb) < 0)
    # causal_chain: a's events up to its step_recv, b's earlier events; never b's banner's peers
    chain = causal_chain(lb)
    assert_true(la in chain and ba in chain and bb in chain)
    assert_true(lb not in chain)
    assert_eq([e.seq for e in chain], sorted([e.seq for e in chain]))
    after = events(type="step_recv", service="b").last
    assert_true(after not in chain)
    # direct causes: the step to b follows a's step_recv with nothing in between
    send_b = first(type="step_send", service="b")
    assert_true(send_b.directly_caused_by(match.event(type="step_recv", service="a")))
    assert_true(not send_b.directly_caused_by(match.event(type="stdout", service="a")))
    assert_true(send_b.same_service_as(lb) and not send_b.same_service_as(la))
    # queries
    assert_eq(count(type="stdout"), 4)
    assert_eq(count(match.any(match.event(raw="hello-a"), match.event(raw="hello-b"))), 2)
    assert_eq(count(match.all(match.event(type="stdout"), match.event(service="a"))), 2)
    assert_eq(count(match.never()), 0)
    assert_eq(event(type="nothing-like-this"), None)
    assert_eq(first(lambda e: e.type == "stdout").seq, min(ba.seq, bb.seq))
    between = events_between(la, lb)
    assert_true(len(between) > 0 and between.first.seq == la.seq + 1 and between.last.seq == lb.seq - 1)
    assert_eq(events_between(lb, la), [])
    assert_eq(len(events_between(None, la)), la.seq - 1)
    assert_eq(events_within(match.event(type="stdout"), "30s", of=la).count, 4)
    assert_eq(len(events_within({"type": "stdout"}, 0, of=la)), 1)
    found = events(where=match.event(type="stdout"))
    assert_eq(found.count, 4)
    assert_eq(found.filter(lambda e: e.service == "a").map(lambda e: e.raw), ["a up", "hello-a"])
    assert_eq(found.reduce(lambda n, e: n + 1, 0), 4)
    assert_eq(type(match.event(type="x")), "matcher")
"""
    )
    res = run(spec)
    t = res.test("causal")
    assert t.outcome.value == "passed", t.reason


def test_await_event_and_await_stable(run) -> None:
    spec = (
        two_services()
        + """
TICK = "import time\\ntime.sleep(0.5)\\nprint('tick', flush=True)\\ntime.sleep(60)"
NOISE = "import time\\nwhile True:\\n    print('n', flush=True)\\n    time.sleep(0.05)"
ticker = service("ticker", "@PYTHON@", args = ["-c", TICK], observe = [observe.stdout()])
noisy = service("noisy", "@PYTHON@", args = ["-c", NOISE], observe = [observe.stdout()])

def test_waits():
    tick = await_event(type="stdout", service="ticker")
    assert_eq(tick.raw, "tick")
    again = await_event(match.event(service="ticker", raw="tick"), timeout = "5s")
    assert_eq(again.seq, tick.seq)  # the earliest match, at once when it is there
    await_stable(quiescence_window = "300ms", ignore = match.event(service="noisy"))
    assert_true(count(service="noisy") > 0)

def test_await_times_out():
    await_event(type="stdout", raw="never printed", timeout = "300ms")

def test_never_stable():
    await_stable(quiescence_window = "300ms")
"""
    )
    res = run(spec, timeout=6)
    assert res.outcome("waits") == "passed", res.test("waits").reason
    t = res.test("await_times_out")
    assert t.outcome.value == "failed"
    assert 'await_event: no event matched event(type="stdout", raw="never printed") within 0.3s' in t.reason
    assert res.outcome("never_stable") == "inconclusive", res.test("never_stable").reason


def test_bad_input_names_the_spec_line(run) -> None:
    spec = (
        svc_decl("a", free_port(), OBSERVE)
        + """
def test_not_an_event():
    e = first(type="service_ready")
    e.happens_before("a")

def test_unknown_anchor():
    events_between("body_start", None)

def test_negative_window():
    e = first(type="service_ready")
    e.followed_by_within(match.event(type="stdout"), "-1s")

def test_bad_matcher():
    count(42)

def test_both_matcher_and_criteria():
    count(match.never(), type="x")
"""
    )
    res = run(spec)
    expected = {
        "not_an_event": ("e.happens_before(): the argument must be an event, got string", 5),
        "unknown_anchor": ("events_between(): start must be an event of this test's trace or None", 8),
        "negative_window": ("e.followed_by_within(): the window must not be negative", 12),
        "bad_matcher": ("count(): expected a matcher (match.event(...)), a function of the event", 15),
        "both_matcher_and_criteria": ("count(): give a matcher or criteria keywords, not both", 18),
    }
    for name, (message, line) in expected.items():
        t = res.test(name)
        assert t.outcome.value in ("failed", "errored"), (name, t.outcome, t.reason)
        assert message in t.reason, (name, t.reason)
        assert f"spec.star:{line}" in (t.reason + " " + str(getattr(t, "location", ""))), (name, t.reason)
