"""fault_assumption, fault_scenario, fault_matrix, expectations, monitors and outcomes."""

from __future__ import annotations

from pathlib import Path

from support import free_port, svc_decl


def test_matrix_names_overrides_expect_and_monitor_scoping(run, tmp_path: Path) -> None:
    port = free_port()
    f = f"{tmp_path}/m.dat"
    spec = (
        svc_decl("svc", port)
        + f"""
def write_once():
    return svc.main.send(data = "RESULTS {f} 1")

def ping():
    return svc.main.send(data = "PING")

def must_never_deny(e):
    if e.type == "syscall" and e.decision == "deny(EIO)":
        fail("a write was denied at #" + str(e.seq))

no_denials = monitor(must_never_deny, service = "svc")

broken = fault_assumption("broken", target = svc, write = deny("EIO", path = "{f}"), monitors = [no_denials])
slow = fault_assumption("slow", target = svc, write = delay("20ms", path = "{f}"))
both = fault_assumption("both", faults = [broken, slow], description = "composed")

scenario(ping)

fault_matrix(
    scenarios = [write_once, ping],
    faults = [broken, slow],
    default_expect = lambda r: assert_eq(r, "PONG"),
    overrides = {{(write_once, slow): lambda r: assert_eq(r, "ok"),
                 (write_once, broken): lambda r: assert_eq(r, "nope")}},
)

fault_scenario("returns_value", scenario = write_once, faults = slow, expect = lambda r: assert_eq(r, "ok"))
fault_scenario("merged", scenario = write_once, faults = [slow, broken], expect = lambda r: assert_eq(r, "EIO"))
fault_scenario("raise_in_expect", scenario = ping, expect = lambda r: fail("expect saw " + r))
"""
    )
    res = run(spec)
    names = [t.name for t in res.result.tests]
    assert names == sorted(names)
    assert set(names) == {
        "test_ping",
        "test_matrix_write_once_broken",
        "test_matrix_write_once_slow",
        "test_matrix_ping_broken",
        "test_matrix_ping_slow",
        "test_returns_value",
        "test_merged",
        "test_raise_in_expect",
    }
    # the monitor travels with `broken`: it fires in write_once x broken, and nowhere else
    wb = res.test("matrix_write_once_broken")
    assert wb.outcome.value == "failed" and 'monitor "must_never_deny" violated' in wb.reason
    assert wb.violation is not None and wb.violation.event["fields"]["decision"] == "deny(EIO)"
    assert res.outcome("matrix_write_once_slow") == "passed"  # override beats default_expect
    assert res.outcome("matrix_ping_broken") == "passed"  # default_expect; monitor attached but quiet
    assert res.outcome("matrix_ping_slow") == "passed"
    assert res.outcome("ping") == "passed"
    rv = res.test("returns_value")
    assert rv.outcome.value == "passed" and rv.return_value == '"ok"'
    merged = res.test("merged")  # two assumptions on one service: both rule sets active (DECISIONS §9)
    assert merged.outcome.value == "failed"  # ... and broken's monitor came along
    assert "must_never_deny" in merged.reason
    assert {e.fields.get("assumption") for e in merged.events if e.type == "fault_applied"} == {"slow", "broken"}
    rie = res.test("raise_in_expect")
    assert rie.outcome.value == "expectation_violated" and rie.reason == "expect saw PONG"
    m = res.result.matrix
    assert m is not None and m.scenarios == ["write_once", "ping"] and m.assumptions == ["broken", "slow"]
    assert {(c.scenario, c.assumption): c.outcome.value for c in m.cells if c.outcome} == {
        ("write_once", "broken"): "failed",
        ("write_once", "slow"): "passed",
        ("ping", "broken"): "passed",
        ("ping", "slow"): "passed",
    }
    assert res.result.to_dict()["matrix"]["failed"] == 1


def test_expectations_and_require_faults_fire(run, tmp_path: Path) -> None:
    port = free_port()
    f = f"{tmp_path}/e.dat"
    spec = (
        svc_decl("svc", port)
        + f"""
def ok():
    return svc.main.send(data = "PING")

idle = fault_assumption("idle", target = svc, fsync = deny("EIO", path = "{f}"))
busy = fault_assumption("busy", target = svc, write = deny("EIO", path = "{f}"))

def write():
    return svc.main.send(data = "RESULTS {f} 1")

fault_matrix(scenarios = [ok, write], faults = [idle, busy], require_faults_fire = True,
             exclude = [(ok, busy)])

def hangs():
    return svc.main.send(data = "RESULTS {f} 1", timeout = "30s")

stuck = fault_assumption("stuck", target = svc, write = hold("forever", path = "{f}"))
fault_scenario("hang_expected", scenario = hangs, faults = stuck, expect = expect_hang(), timeout = "500ms")
fault_scenario("hang_unexpected", scenario = hangs, faults = stuck, expect = expect_success(), timeout = "500ms")
fault_scenario("hang_no_expect", scenario = hangs, faults = stuck, timeout = "500ms")
"""
    )
    res = run(spec)
    assert res.outcome("matrix_ok_idle") == "fault_bypassed"
    assert "require_faults_fire" in res.test("matrix_ok_idle").reason
    assert res.outcome("matrix_write_busy") == "passed"
    assert res.outcome("matrix_write_idle") == "passed"  # RESULTS fsyncs: the rule fired
    m = res.result.matrix
    assert m is not None
    excluded = [c for c in m.cells if c.outcome is None]
    assert [(c.scenario, c.assumption) for c in excluded] == [("ok", "busy")]
    assert res.outcome("hang_expected") == "passed"
    hu = res.test("hang_unexpected")
    assert hu.outcome.value == "expectation_violated" and "hung" in hu.reason
    assert res.outcome("hang_no_expect") == "inconclusive"
    assert res.result.exit_code == 2


def test_stateful_monitor_is_spec_wide_and_inline_monitor_is_per_test(run) -> None:
    spec = """
starts = monitor("one_start_per_test", on = lambda e: e.type == "test_marker", state_init = 0,
                 update = lambda e, s: s + 1, check = lambda e, s: s < 2)

def test_quiet():
    pass

def test_inline():
    monitor(lambda e: fail("saw " + e.type), type = "boom")
    sleep("10ms")
"""
    res = run(spec)
    assert res.outcome("quiet") == "passed"
    assert res.outcome("inline") == "passed"  # no "boom" event: the inline monitor stays quiet


def test_halt_is_neither_pass_nor_fail(run) -> None:
    res = run('def test_premise():\n    halt("the cache is disabled here")\n\ndef test_ok():\n    pass\n')
    h = res.test("premise")
    assert h.outcome.value == "halted" and h.reason == "halted: the cache is disabled here"
    assert res.result.exit_code == 0 and res.result.counts()["halted"] == 1


def test_a_monitor_that_never_returns_is_stopped_at_the_deadline(run) -> None:
    # Monitors run on the thread that appends the event: here the output pump (a stdout line) and
    # the teardown (the service's exit). Stuck there, they would stall every other event.
    port = free_port()
    spec = (
        svc_decl("svc", port, extra=", observe = [observe.stdout()]")
        + """
def spin(e):  # 10^14 additions: it never returns on its own
    n = 0
    for i in range(10000000):
        for j in range(10000000):
            n += j

def test_spins_on_output():
    monitor(spin, type = "stdout")
    svc.main.send(data = "LOG hello")
    svc.main.send(data = "PING")

def test_spins_at_teardown():
    monitor(spin, type = "service_exited")
    assert_eq(svc.main.send(data = "PING"), "PONG")

def test_unaffected():
    assert_eq(svc.main.send(data = "PING"), "PONG")
"""
    )
    res = run(spec, timeout=2.0)
    for name in ("spins_on_output", "spins_at_teardown"):
        t = res.test(name)
        assert t.outcome.value == "failed", res.explain()
        assert t.violation is not None and t.violation.monitor == "spin"
        assert "still running at the test's deadline" in t.reason, t.reason
        # Stopped at the 2 s deadline, not left to spin (that would take hours): a bound far above
        # the deadline, the grace and a loaded machine's start and stop, and far below the spin.
        assert t.duration_ms < 60_000, t.duration_ms
    assert res.test("spins_on_output").violation.event["type"] == "stdout"
    assert res.outcome("unaffected") == "passed"


def test_a_test_that_checks_nothing_is_warned_about(run) -> None:
    port = free_port()
    spec = (
        svc_decl("svc", port)
        + """
def test_vacuous():
    svc.main.send(data = "NO SUCH COMMAND")  # its answer is never looked at

def test_asserted():
    assert_eq(svc.main.send(data = "PING"), "PONG")

def test_monitored():
    monitor(lambda e: None, type = "step_recv")
    svc.main.send(data = "PING")

def test_failing_is_not_warned():
    fail("no")

def probe():
    return svc.main.send(data = "PING")

scenario(probe)  # a probe runs as test_probe; its checks are where it runs under faults
"""
    )
    res = run(spec)
    warned = {t.name for t in res.result.tests if any(d.code == "TEST_NO_ASSERTIONS" for d in t.diagnostics)}
    assert warned == {"test_vacuous"}, res.explain()
    assert res.outcome("vacuous") == "passed" and res.outcome("probe") == "passed"
