"""test() with eventually/always, terminate_when and assume=, run for real: one spec per verdict
row (natural end, terminate_when, timeout, immediate fail, vacuous window), and the reset of a
property value shared by two tests."""

from __future__ import annotations

import time

from support import free_port, svc_decl

OBSERVE = ", observe = [observe.stdout()]"
# A service that prints a line every 50 ms for a while: events keep arriving without any step.
TICKER = (
    "TICK = \"import time\\nfor i in range(400):\\n    print('tick', i, flush=True)\\n    time.sleep(0.05)\\n"
    'time.sleep(60)"\n'
    'ticker = service("ticker", "@PYTHON@", args = ["-c", TICK], observe = [observe.stdout()])\n'
)


def with_svc() -> str:
    return svc_decl("a", free_port(), OBSERVE)


def test_natural_end(run) -> None:
    spec = (
        with_svc()
        + """
def say(text):
    return lambda: assert_eq(a.main.send("LOG " + text), "ok")

DONE = eventually(match.event(type="stdout", service="a", raw="done"))

test("pass", body=say("done"), expect=DONE)
test("fail", body=say("other"), expect=[DONE, always(lambda t: True)])
test("expect_list", body=say("done"), expect=[
    eventually(lambda t: t.count(type="stdout", service="a") == 1),
    always(lambda t: t.count(type="stdout", raw="bad") == 0),
])

def body_made():
    eventually(lambda t: t.event(type="stdout", raw="later") != None)
    a.main.send("LOG soon")

test("made_in_body", body=body_made)

def test_plain_def():
    always(lambda t: t.count(type="stdout", raw="bad") == 0)
    a.main.send("LOG bad")
    a.main.send("LOG after")
"""
    )
    res = run(spec)
    assert res.outcome("pass") == "passed", res.explain()
    t = res.test("fail")
    assert t.outcome.value == "failed"
    assert t.reason == "eventually at spec.star:6 never held (pending at the end of the body)", t.reason
    assert t.location.endswith("spec.star:6")
    statuses = [(p["kind"], p["status"]) for p in t.details["properties"]]
    assert statuses == [("eventually", "pending"), ("always", "satisfied")]
    assert res.outcome("expect_list") == "passed", res.explain()
    passed = res.test("pass").details["properties"][0]
    assert passed["status"] == "satisfied" and passed["at_seq"] > 0
    made = res.test("made_in_body")
    assert made.outcome.value == "failed" and "eventually at spec.star:16 never held" in made.reason
    plain = res.test("plain_def")
    assert plain.outcome.value == "failed" and plain.reason.startswith("always at spec.star:22 violated"), plain.reason
    assert not any(e.fields.get("raw") == "after" for e in plain.events), "the body stopped at its next step"


def test_always_violated_fails_at_once_and_stops_the_body(run) -> None:
    spec = (
        TICKER
        + """
def long():
    sleep("30s")

def spin():
    n = 0
    for i in range(100000000):
        n += i

test("violated", body=long, expect=always(lambda t: t.count(type="stdout", service="ticker") < 5))
test("busy_body", body=spin, expect=always(lambda t: t.count(type="stdout", service="ticker") < 5))

def halts():
    await_event(type="stdout", raw="tick 6")
    halt("never mind")

test("halt_after_violation", body=halts, expect=always(lambda t: t.count(type="stdout") < 3))
"""
    )
    started = time.monotonic()
    res = run(spec)
    assert time.monotonic() - started < 25, "the violation stopped the 30 s body"
    t = res.test("violated")
    assert t.outcome.value == "failed", res.explain()
    assert t.reason.startswith("always at spec.star:12 violated: became false after event #"), t.reason
    assert "(stdout ticker)" in t.reason
    assert [p["status"] for p in t.details["properties"]] == ["violated"]
    assert res.outcome("busy_body") == "failed", res.explain()
    assert res.outcome("halt_after_violation") == "failed", res.explain()


def test_terminate_when(run) -> None:
    spec = (
        TICKER
        + """
def long():
    sleep("30s")

test("stops", body=long, terminate_when=eventually(lambda t: t.count(type="stdout", service="ticker") >= 5),
     expect=[always(lambda t: t.count(type="stderr") == 0, between=("body_start", match.event(raw="never")))])
test("pending", body=long, terminate_when=eventually(match.event(raw="tick 3")),
     expect=eventually(lambda t: t.event(raw="no such line") != None))
"""
    )
    started = time.monotonic()
    res = run(spec)
    assert time.monotonic() - started < 25
    t = res.test("stops")
    assert t.outcome.value == "passed", res.explain()
    props = t.details["properties"]
    assert [(p["role"], p["status"]) for p in props] == [("expect", "satisfied"), ("terminate_when", "satisfied")]
    p = res.test("pending")
    assert p.outcome.value == "failed"
    assert p.reason.endswith("never held (pending when terminate_when ended the test)"), p.reason


def test_timeout_is_inconclusive_never_pass(run) -> None:
    spec = (
        TICKER
        + """
def long():
    sleep("30s")

test("pending", body=long, timeout="1s", expect=eventually(lambda t: t.event(raw="no such line") != None))
test("unbounded_always", body=long, timeout="1s", expect=always(lambda t: True))
test("window_open", body=long, timeout="1s", expect=always(lambda t: True, between=("body_start", "stable")))
test("nothing", body=long, timeout="1s")
"""
    )
    started = time.monotonic()
    res = run(spec, timeout=60)
    assert time.monotonic() - started < 30, "test(timeout=) wins over the run's timeout"
    t = res.test("pending")
    assert t.outcome.value == "inconclusive", res.explain()
    assert t.reason == "timed out after 1s; still pending: eventually at spec.star:7", t.reason
    for name in ("unbounded_always", "window_open", "nothing"):
        assert res.outcome(name) == "inconclusive", res.explain()
    assert res.test("unbounded_always").details["properties"][0]["status"] == "pending"


def test_vacuous_window_and_stable_anchor(run) -> None:
    spec = (
        with_svc()
        + """
def body():
    a.main.send("LOG one")
    await_stable(quiescence_window = "200ms")
    a.main.send("LOG bad")

test("vacuous", body=body, expect=always(lambda t: False, between=(match.event(raw="never"), "body_end")))
test("until_stable", body=body,
     expect=always(lambda t: t.count(type="stdout", raw="bad") == 0, between=("body_start", "stable")))
test("after_stable", body=body,
     expect=always(lambda t: t.count(type="stdout", raw="bad") == 0, between=("stable", "body_end")))
"""
    )
    res = run(spec)
    t = res.test("vacuous")
    assert t.outcome.value == "passed", res.explain()
    assert t.details["properties"][0]["status"] == "vacuous"
    marks = [e for e in t.events if e.type == "vacuous_property"]
    assert len(marks) == 1 and marks[0].fields["location"].endswith("spec.star:8")
    assert res.outcome("until_stable") == "passed", res.explain()
    assert res.outcome("after_stable") == "failed", res.explain()


def test_setup_and_assume(run) -> None:
    spec = (
        with_svc()
        + """
def body():
    a.main.send("LOG hi")

def setup_ok():
    a.main.send("LOG ready")

def setup_bad():
    x = {}
    x["missing"]

def setup_halts():
    halt("no")

def boom(c):
    return 1 // 0

test("setup_ok", body=body, setup=setup_ok, expect=eventually(match.event(raw="ready")))
test("setup_fails", body=body, setup=setup_bad)
test("setup_halts", body=body, setup=setup_halts)
test("assumed", body=body, assume=[True, lambda c: len(c) == 0], expect=eventually(match.event(raw="hi")))
test("assume_false", body=body, assume=[True, lambda c: c.get("retries", 0) > 5])
test("assume_raises", body=body, assume=[boom])
"""
    )
    res = run(spec)
    assert res.outcome("setup_ok") == "passed", res.explain()
    t = res.test("setup_fails")
    assert t.outcome.value == "failed" and t.reason.startswith("setup failed:"), t.reason
    assert t.location.endswith("spec.star:11"), t.location
    h = res.test("setup_halts")
    assert h.outcome.value == "failed" and "not in setup=" in h.reason, h.reason
    assert res.outcome("assumed") == "passed", res.explain()
    f = res.test("assume_false")
    assert f.outcome.value == "halted", res.explain()
    assert 'assume[1] at spec.star:23 (lambda c: c.get("retries", 0) > 5) is false' in f.reason, f.reason
    r = res.test("assume_raises")
    assert r.outcome.value in ("failed", "errored") and r.location.endswith("spec.star:17"), (r.reason, r.location)


def test_a_shared_property_value_is_fresh_in_every_test(run) -> None:
    spec = (
        with_svc()
        + """
MARKED = eventually(match.event(type="stdout", raw="mark"))
HELD = always(lambda t: t.count(type="stdout", raw="bad") == 0)

def marks():
    a.main.send("LOG mark")
    a.main.send("LOG bad")

def quiet():
    a.main.send("LOG nothing")

test("a_marks", body=marks, expect=[MARKED, HELD])
test("b_quiet", body=quiet, expect=[MARKED, HELD])
"""
    )
    res = run(spec)
    assert res.outcome("a_marks") == "failed", res.explain()  # HELD violated in the first test
    b = res.test("b_quiet")
    assert b.outcome.value == "failed", res.explain()
    assert "eventually at spec.star:3 never held" in b.reason, b.reason  # not satisfied by test a
    assert [p["status"] for p in b.details["properties"]] == ["pending", "satisfied"]


def test_a_predicate_still_running_at_the_deadline_is_stopped_and_fails_its_test(run) -> None:
    """A predicate runs on whichever thread appended the event, holding the trace: one that never
    returns would hold the test past its deadline. The watchdog stops it, as it stops a monitor."""
    spec = (
        with_svc()
        + """
def endless(t):
    n = 0
    for i in range(10000000):
        for j in range(10000000):
            n += 1
    return True

def body():
    a.main.send("LOG go")

test("stuck", body=body, timeout="2s", expect=always(endless))

def on_ticks(t):
    return t.count(type="stdout", service="ticker") < 3 or endless(t)

test("stuck_on_the_pump", body=lambda: sleep("30s"), timeout="2s", expect=always(on_ticks))
"""
    )
    started = time.monotonic()
    res = run(TICKER + spec)
    # on the body's thread (the step's event), and on the output pump's (the ticker's lines)
    for name, line in (("stuck", 15), ("stuck_on_the_pump", 20)):
        t = res.test(name)
        assert t.outcome.value == "failed", res.explain()
        assert t.reason.startswith(f"always at spec.star:{line}: its predicate raised"), t.reason
        assert "still running at the test's deadline" in t.reason, t.reason
        # where it was stopped: inside the predicate, or (stopped between two of its lines) the property
        assert int(t.location.rsplit(":", 1)[1]) in (*range(5, 11), 17, line), t.location
    assert time.monotonic() - started < 60, "the predicates were stopped, not waited for"
