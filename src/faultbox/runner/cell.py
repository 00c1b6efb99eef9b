"""One test, start to verdict: start its services, run its body (or its fault scenario) in a
thread under a deadline, tear everything down, and judge (DECISIONS §12)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from faultbox._util.threads import ContextThread, raise_in_thread
from faultbox.errors import (
    Code,
    FaultboxError,
    Halted,
    InfraError,
    MonitorStop,
    SpecError,
    SpecFailure,
    TestTimeout,
)
from faultbox.model.event import SOURCE_ERROR, Event
from faultbox.model.fault import PARTITION_OP
from faultbox.model.result import Diagnostic, FaultRecord, Outcome, TestResult
from faultbox.model.scenario import Expectation, FaultScenario, TestCase
from faultbox.model.temporal import BODY_START
from faultbox.runner import temporal
from faultbox.runner.context import RunContext
from faultbox.runner.host import TestHost
from faultbox.runner.leaf import LeafState
from faultbox.runner.services import RunningService
from faultbox.spec import host as host_mod
from faultbox.spec.compile import describe_exception, function_source
from faultbox.spec.values import starlark_repr

_ABANDON_AFTER = 3.0  # seconds a body may ignore its timeout before we stop waiting for it


@dataclass
class BodyOutcome:
    result: Any = None
    error: BaseException | None = None
    expect_error: BaseException | None = None
    hung: bool = False
    abandoned: bool = False


def _lagging_sources(events: list[Event]) -> list[Diagnostic]:
    """One warning per service whose event source (wal, topic) missed a step's barrier: its events
    may have entered the trace after the step returned, so a check made right then may not have
    seen them (they are in the trace by the end of the test if the source caught up). One error per
    service whose source ended during the test (its reader process died): the rest is missing."""
    missed: dict[str, list[Event]] = {}
    failed: dict[str, Event] = {}  # a source that ended (fatal="true"): the barrier errors after it follow
    for e in events:
        if e.type == SOURCE_ERROR and e.service not in failed:
            if e.fields.get("fatal") == "true":
                failed[e.service] = e
            else:
                missed.setdefault(e.service, []).append(e)
    lagged = [
        Diagnostic(
            "warning",
            Code.SOURCE_LAGGED.value,
            f"the event source of {service!r} could not catch up at {len(errors)} step boundar"
            f"{'y' if len(errors) == 1 else 'ies'} (first at #{errors[0].seq}: {errors[0].fields.get('error', '')}); "
            "its events may have reached the trace after the step returned",
            service=service,
        )
        for service, errors in missed.items()
    ]
    return lagged + [
        Diagnostic(
            "error",
            Code.SOURCE_FAILED.value,
            f"the event source of {service!r} stopped at #{e.seq} ({e.fields.get('error', '')}): "
            "its events after that are missing from the trace",
            service=service,
        )
        for service, e in failed.items()
    ]


def run_test(ctx: RunContext, case: TestCase, timeout: float, replay: str, leaf: LeafState | None = None) -> TestResult:
    ctx.renew_supervisor()
    test_dir = os.path.join(ctx.workdir, case.name)
    os.makedirs(test_dir, exist_ok=True)
    timeout = temporal.deadline_for(case, timeout)
    host = TestHost(ctx, case.name, test_dir, deadline=float("inf"), leaf=leaf)
    for monitor in ctx.spec.spec_monitors:
        host.monitors.add(monitor)
    host.attach()
    started = time.monotonic()
    started_wall = time.time()
    start_error: BaseException | None = None
    outcome = BodyOutcome()
    timings: dict[str, int] = {}
    watchdog = _MonitorWatchdog(host, fallback_deadline=started + timeout)
    # The test's host is current from its first service to its last teardown step: monitors run on
    # the events of all of them, and may query the trace. Current in this thread's context only
    # (spec/host.py): the threads this test starts copy it, another test's threads never see it.
    current = host_mod.set_current(host)
    try:
        try:
            host.start_services()
        except FaultboxError as exc:
            start_error = exc
        timings["start_ms"] = _ms_since(started)
        if start_error is None:
            host.deadline = time.monotonic() + timeout
            body_started = time.monotonic()
            outcome = _run_body(case, host)
            temporal.finish(host, outcome)
            timings["body_ms"] = _ms_since(body_started)
    finally:
        stop_started = time.monotonic()
        host.teardown()
        host.detach()
        host_mod.reset(current)
        watchdog.stop()
        timings["stop_ms"] = _ms_since(stop_started)
    result = judge(case, host, start_error, outcome)
    result.duration_ms = _ms_since(started)
    result.timings = timings
    result.started = started_wall
    result.defined_at = str(case.location or "")
    result.seed = ctx.seed
    result.replay = replay
    result.events = host.log.snapshot()
    result.decisions = host.leaf.taken.to_text()
    if host.leaf.forced:  # what the leaf asked for, where `decisions` says what happened
        result.details["forced"] = host.leaf.forced.to_text()
    result.faults = host.faults.records
    result.diagnostics.extend(host.faults.diagnostics)
    result.diagnostics.extend(host.proxies.diagnostics())
    result.diagnostics.extend(_lagging_sources(result.events))
    lost = [d for d in result.diagnostics if d.code == Code.SOURCE_FAILED.value]
    if lost and result.outcome is Outcome.PASSED:
        # A pass judged on a trace with a hole in it proves nothing: an assert_never() after the
        # source died saw no event because none could arrive. A failure seen before it stands.
        result.outcome = Outcome.ERRORED
        result.reason = lost[0].message
        result.code = Code.SOURCE_FAILED.value
    checked = host.assertions > 0 or host.monitors.calls_total > 0
    if result.outcome is Outcome.PASSED and not checked and not case.probe:
        result.diagnostics.append(
            Diagnostic(
                "warning",
                Code.TEST_NO_ASSERTIONS.value,
                "passed without evaluating any assertion or monitor: it only shows that nothing raised",
            )
        )
    if case.fault_scenario is not None:
        result.matrix = case.fault_scenario.matrix
        result.assumptions = [fa.name for fa in case.fault_scenario.assumptions]
        result.expectation = _expectation_text(case.fault_scenario.expect)
    result.details.setdefault("assertions", host.assertions)
    if host.output:
        result.details["printed"] = host.output[-50:]
    return result


class _MonitorWatchdog:
    """For the whole test (start, body, teardown): a monitor call that runs past the deadline is
    stopped, whichever thread it runs on (the body's own calls included)."""

    _POLL = 0.05

    def __init__(self, host: TestHost, fallback_deadline: float) -> None:
        self._host = host
        self._fallback = fallback_deadline  # while services start, the body's deadline is not set
        self._stopped = threading.Event()
        # A plain thread: it runs no spec code, only interrupts calls of the host it was given.
        self._thread = threading.Thread(target=self._run, name="faultbox-monitor-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self._POLL):
            deadline = self._host.deadline
            limit = deadline if deadline != float("inf") else self._fallback
            self._host.monitors.interrupt_overdue(limit)
            self._host.properties.interrupt_overdue(limit)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


def _ms_since(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


# -- the body --------------------------------------------------------------------------------


def _run_body(case: TestCase, host: TestHost) -> BodyOutcome:
    outcome = BodyOutcome()

    def target() -> None:
        try:
            _run_seeds(host)
            if case.temporal is None:
                host.properties.signal(BODY_START)  # for an eventually/always made in the body
            if case.fault_scenario is not None:
                _fault_scenario(case.fault_scenario, host, outcome)
            elif case.temporal is not None:
                outcome.result = temporal.run_declared(case.temporal, host)
            else:
                assert case.body is not None
                outcome.result = case.body()
                host.barrier()
        except BaseException as exc:  # everything the body raises is judged, nothing escapes
            outcome.error = exc

    # In this thread's context, where the host is current: the body (and seed=/reset=) is spec code.
    thread = ContextThread(target=target, name=f"faultbox-test:{case.name}", daemon=True)
    thread.start()
    _watch(thread, host, outcome)
    return outcome


def _run_seeds(host: TestHost) -> None:
    """service(seed=fn, reset=fn): a freshly started service gets its seed, then its reset. One
    kept from an earlier test (reuse=True) gets its reset (its seed when it has none), and must then
    hold the data a fresh start's seed and reset gave it, where faultbox can read its data. Only a
    service whose hooks (and check) succeeded is kept for the next test."""
    for rs in list(host.services.running.values()):
        if rs.reused:
            hooks = [("reset", rs.model.reset)] if rs.model.reset is not None else [("seed", rs.model.seed)]
        else:
            hooks = [("seed", rs.model.seed), ("reset", rs.model.reset)]
        for what, hook in hooks:
            if hook is None:
                continue
            host.seeding, host.seed_failure = True, None
            try:
                hook()
            except SpecFailure as exc:
                raise SpecFailure(f"{what} of service {rs.name} failed: {exc}", exc.details) from exc
            finally:
                host.seeding = False
            if host.seed_failure is not None:  # steps do not raise: a seed's failed step still fails it
                raise SpecFailure(f"{what} of service {rs.name} failed: {host.seed_failure}")
            host.barrier()
        if rs.model.reuse:
            _check_reset(host, rs, hooks[0][0])
            rs.clean = True


def _check_reset(host: TestHost, rs: RunningService, how: str) -> None:
    """The first fresh start records the service's data; every test that adopts it compares."""
    try:
        state = host.services.state(rs)
    except Exception as exc:
        raise SpecFailure(f"cannot read the data of service {rs.name} to check its {how}: {exc}") from None
    if state is None:
        return
    if not rs.reused:
        rs.baseline = state
        return
    if rs.baseline is None:  # it was kept without a baseline: nothing to compare with, keep none
        raise SpecFailure(f"cannot check the {how} of service {rs.name}: no fresh start recorded its data")
    changed = _state_changes(rs.baseline, state)
    host.emit("service_reset", rs.name, {"reused": "true", "checked": "true", "leaked": str(len(changed))})
    if changed:
        shown = "; ".join(changed[:8]) + (f"; and {len(changed) - 8} more" if len(changed) > 8 else "")
        raise SpecFailure(
            f"service {rs.name} was kept from an earlier test (reuse=True), and after its {how} its data "
            f"differs from a fresh start's: {shown}. Make {how}= restore what seed= made "
            "(PostgreSQL: TRUNCATE ... RESTART IDENTITY, then the seed's rows; Redis: FLUSHALL, then the "
            "seed's keys), or drop reuse=True"
        )


def _state_changes(fresh: dict[str, str], now: dict[str, str]) -> list[str]:
    out = []
    for key in sorted(set(fresh) | set(now)):
        before, after = fresh.get(key, "absent"), now.get(key, "absent")
        if before != after:
            out.append(f"{key}: {after} (fresh: {before})")
    return out


def _watch(thread: threading.Thread, host: TestHost, outcome: BodyOutcome) -> None:
    """Wait for the body; past its deadline, interrupt it; if it will not stop, leave it."""
    interrupted_at: float | None = None
    stopper = temporal.BodyStopper(host)  # an always violated, or terminate_when held
    while thread.is_alive():
        thread.join(0.05)
        now = time.monotonic()
        if stopper.abandon(thread, now):
            outcome.abandoned = True
            return
        if interrupted_at is None and now > host.deadline + 1.0:
            if thread.ident is not None:
                raise_in_thread(thread.ident, TestTimeout)  # a body stuck in pure computation
            interrupted_at = now
        elif interrupted_at is not None and now > interrupted_at + _ABANDON_AFTER:
            outcome.abandoned = True
            outcome.error = outcome.error or TestTimeout("the test body did not stop after its deadline")
            return


def _fault_scenario(fs: FaultScenario, host: TestHost, outcome: BodyOutcome) -> None:
    for monitor in fs.monitors:
        host.monitors.add(monitor)

    def call_scenario() -> Any:
        saved = host.deadline
        if fs.timeout:
            host.deadline = min(saved, time.monotonic() + fs.timeout)
        try:
            return fs.scenario()
        except TestTimeout:
            if time.monotonic() >= saved:
                raise  # the whole test's deadline, not the scenario's
            outcome.hung = True
            return None
        finally:
            host.deadline = saved

    outcome.result = host.apply_assumptions(fs.assumptions, call_scenario)
    host.checkpoint()  # a violation stops here: expect is not judged
    if fs.expect is None:
        return
    try:
        if isinstance(fs.expect, Expectation):
            host.count_assertion()
            fs.expect.judge(outcome.result, outcome.hung)
        else:
            _refuse_false(fs.expect, fs.expect(outcome.result))
        host.barrier()
        host.checkpoint()
    except MonitorStop:
        raise
    except BaseException as exc:  # a raise inside expect is an expectation violation
        outcome.expect_error = exc


def _refuse_false(expect: Any, value: Any) -> None:
    """An expectation that returns False (or a tuple of checks holding a False) failed: it is a
    predicate that said no, not a pass. None, and anything else, passes (checks that raise)."""
    if value is False or (isinstance(value, (tuple, list)) and any(v is False for v in value)):
        where, shown = function_source(expect)
        failure = SpecFailure(f"expect returned False: {shown or _expectation_text(expect)}")
        failure.fb_location = where  # type: ignore[attr-defined]
        raise failure


# -- the verdict -----------------------------------------------------------------------------


def judge(case: TestCase, host: TestHost, start_error: BaseException | None, body: BodyOutcome) -> TestResult:
    res = TestResult(case.name, Outcome.PASSED, location=str(case.location or ""))
    violation = host.monitors.violation
    if host.infra_error is not None or (isinstance(body.error, InfraError) and not _is_start(body.error)):
        err = host.infra_error or body.error
        return _set(res, Outcome.ERRORED, _text(err), err)
    if isinstance(start_error, InfraError) and not _is_start(start_error):  # the machine, not the service
        return _set(res, Outcome.ERRORED, f"services did not start: {_text(start_error)}", start_error)
    if start_error is not None:
        return _set(res, Outcome.FAILED, f"services did not start: {_text(start_error)}", start_error)
    if violation is not None:
        res.violation = violation
        res.reason = f'monitor "{violation.monitor}" violated: {violation.message}'
        res.outcome = Outcome.FAILED
        res.location = violation.location or res.location
        return res
    failure = host.mock_handlers.failure
    if failure is not None:  # a mock's own handler broke: what the system saw was not the spec's intent
        res = _set(res, Outcome.FAILED, failure.message, None)
        res.location = failure.location or res.location
        return res
    decided = temporal.verdict(case, host, body, res)  # eventually/always, and test()'s causes
    if decided is not None:
        return decided
    if isinstance(body.error, Halted):
        return _set(res, Outcome.HALTED, f"halted: {body.error}", body.error)
    if isinstance(body.error, TestTimeout):
        return _set(res, Outcome.INCONCLUSIVE, f"timed out: {body.error}", body.error)
    if body.error is not None:
        message, location = describe_exception(body.error)
        res = _set(res, Outcome.FAILED, message, body.error)
        res.location = location or res.location
        return res
    res.return_value = starlark_repr(body.result)[:500] if body.result is not None else ""
    if body.expect_error is not None:
        message, location = describe_exception(body.expect_error)
        prefix = "the scenario hung (timed out); " if body.hung else ""
        res = _set(res, Outcome.EXPECTATION_VIOLATED, prefix + message, body.expect_error)
        res.location = location or res.location
        return res
    fs = case.fault_scenario
    if fs is not None and body.hung and fs.expect is None:
        return _set(res, Outcome.INCONCLUSIVE, f"the scenario timed out after {fs.timeout:g}s", None)
    if fs is not None and fs.require_faults_fire:
        silent = _silent_faults(host.faults.records)
        if silent:
            names = ", ".join(f"{f.service}.{f.keyword}={f.decision}" for f in silent)
            return _set(res, Outcome.FAULT_BYPASSED, f"require_faults_fire: these faults did nothing: {names}", None)
    return res


def _expectation_text(expect: object) -> str:
    if expect is None:
        return ""
    if isinstance(expect, Expectation):
        return repr(expect).strip("<>")
    code = getattr(expect, "__code__", None)
    name = getattr(expect, "__name__", "expect").replace("<lambda>", "lambda")
    return f"{name} at {code.co_filename}:{code.co_firstlineno}" if code is not None else name


def _is_start(exc: BaseException) -> bool:
    from faultbox.runner.services import StartFailure

    return isinstance(exc, StartFailure)


def _text(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    if isinstance(exc, SpecError):
        return exc.render()
    if isinstance(exc, InfraError):  # the machine's fault: its code and fix in the reason
        return f"[{exc.code.value}] {exc.message}" + (f" (fix: {exc.hint})" if exc.hint else "")
    return describe_exception(exc)[0]


def _silent_faults(records: list[FaultRecord]) -> list[FaultRecord]:
    """Faults that did nothing. A partition's rules (a side and a port each) count as one fault:
    silent only when none of them fired."""
    faults = [f for f in records if f.decision not in ("allow", "trace")]
    partition = [f for f in faults if f.op == PARTITION_OP]
    silent = [f for f in faults if f.fired == 0 and f.op != PARTITION_OP]
    if partition and not any(f.fired for f in partition):
        silent.append(partition[0])
    return silent


def _set(res: TestResult, outcome: Outcome, reason: str, exc: BaseException | None) -> TestResult:
    res.outcome = outcome
    res.reason = reason
    code = getattr(exc, "code", None)
    if code is not None and hasattr(code, "value"):
        res.code = str(code.value)
    if isinstance(exc, SpecFailure) and exc.details:
        res.details.update(exc.details)
    hint = getattr(exc, "hint", None)
    if isinstance(hint, str) and hint and not isinstance(exc, InfraError):  # an infra error's text has it
        res.details["fix"] = hint
    return res


__all__ = ["BodyOutcome", "judge", "run_test"]
