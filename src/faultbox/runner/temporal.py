"""Running and judging tests with temporal properties: a declarative `test()` (setup, assume=,
body, expect=, terminate_when=) and any test whose body created an eventually/always.

Termination causes and their verdicts (docs/temporal.md has the table):
  natural         the body returned: a pending eventually fails
  terminate_when  its property held, the body was cancelled: a pending eventually fails; an
                  always whose window end never came holds
  timeout         the test's timeout expired: nothing failing means inconclusive, never pass
  immediate       the body raised, or an always was violated: fail
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from faultbox._util.threads import raise_in_thread
from faultbox.errors import Halted, MonitorStop, SpecFailure, TerminateBody, TestTimeout
from faultbox.model.result import Outcome, TestResult
from faultbox.model.scenario import TestCase
from faultbox.model.temporal import BODY_START, Property, TemporalTest
from faultbox.spec.builtins.temporal import TraceView
from faultbox.spec.compile import describe_exception, function_source
from faultbox.trace.properties import EXPECT, PENDING, TERMINATE, VIOLATED, PropertySet, PropertyState

if TYPE_CHECKING:
    from faultbox.runner.cell import BodyOutcome
    from faultbox.runner.host import TestHost

_CHECKPOINT_GRACE = 0.2  # seconds a stopped body gets to reach a step or wait by itself
_EXIT_GRACE = 2.0  # seconds a cancelled body gets to exit before the test goes on without it


def property_set(host: TestHost) -> PropertySet:
    def stopped(st: PropertyState) -> None:
        host.violated.set()  # wakes a sleep(); waits on the trace wake on the event itself

    return PropertySet(host.log, TraceView, describe_exception, stopped)


def checkpoint(props: PropertySet) -> None:
    """What TestHost.checkpoint raises for the properties: a violation stops the body like a
    monitor's; terminate_when cancels it."""
    if props.violation is not None:
        raise MonitorStop(_violation_reason(props.violation))
    if props.terminated is not None:
        raise TerminateBody(f"terminate_when ({props.terminated.prop.where}) held")


# -- the body ---------------------------------------------------------------------------------


class SetupFailed(SpecFailure):
    """setup= raised: the test fails with the setup's line."""


def run_declared(t: TemporalTest, host: TestHost) -> Any:
    """A test()'s body thread: expectations, setup, assumptions, then the body."""
    props = host.properties
    for prop in t.expect:
        host.add_property(prop)
    if t.terminate_when is not None:
        props.add(t.terminate_when, TERMINATE)
    if t.setup is not None:
        try:
            t.setup()
            host.barrier()
        except (TestTimeout, MonitorStop, TerminateBody):
            raise
        except (Exception, SpecFailure) as exc:
            message, location = describe_exception(exc)
            if isinstance(exc, Halted):
                message = "halt() may only be called in the body, not in setup="
            failure = SetupFailed(f"setup failed: {message}")
            failure.fb_location = location  # type: ignore[attr-defined]
            raise failure from exc
    _check_assumptions(t, host.leaf.choice_values())
    props.signal(BODY_START)
    host.checkpoint()
    result = t.body()
    host.barrier()
    return result


def _check_assumptions(t: TemporalTest, choices: dict[str, Any]) -> None:
    """assume= at body entry, with the choices of the leaf being run (name -> option value); the
    first run of a test that fans out has made none yet, and gets {}."""
    for i, item in enumerate(t.assume):
        value = item if isinstance(item, bool) else item(dict(choices))
        if not value:
            raise Halted(f"assume[{i}] {_described(item)}is false")


def _described(item: Any) -> str:
    where, text = function_source(item)
    if where is None:
        return ""
    shown = f" ({text})" if text.startswith("lambda") else ""
    return f"at {where.file.rsplit('/', 1)[-1]}:{where.line}{shown} "


class BodyStopper:
    """Cancels a body whose test a property stopped: it first gets a moment to reach a step or a
    wait (which raise at once), then is interrupted, then is left behind after _EXIT_GRACE."""

    def __init__(self, host: TestHost) -> None:
        self._props = host.properties
        self._since: float | None = None
        self._interrupted = False

    def abandon(self, thread: threading.Thread, now: float) -> bool:
        """Called while the body runs; True when the test must go on without it."""
        if self._props.violation is None and self._props.terminated is None:
            return False
        if self._since is None:
            self._since = now
        elif not self._interrupted and now > self._since + _CHECKPOINT_GRACE and thread.ident is not None:
            raise_in_thread(thread.ident, TerminateBody)
            self._interrupted = True
        return now > self._since + _EXIT_GRACE


def finish(host: TestHost, body: BodyOutcome) -> None:
    """After the body: body_end, the last look at each eventually, and vacuous windows noted."""
    props = host.properties
    if not props.states:
        return
    host.barrier()
    timed_out = isinstance(body.error, TestTimeout) and props.terminated is None
    for st in props.finish(timed_out):
        host.emit(
            "vacuous_property",
            "",
            {"property": st.prop.kind, "location": str(st.prop.location or ""), "reason": "its window never opened"},
        )


# -- the verdict ------------------------------------------------------------------------------


def verdict(case: TestCase, host: TestHost, body: BodyOutcome, res: TestResult) -> TestResult | None:
    """The verdict when properties decide it, else None (the usual judging goes on). Always
    records each property's outcome in res.details["properties"]."""
    props = host.properties
    if not props.states:
        return None
    res.details["properties"] = [st.to_dict() for st in props.states]
    if props.violation is not None:
        st = props.violation
        res.outcome, res.reason = Outcome.FAILED, _violation_reason(st)
        res.location = st.location or str(st.prop.location or "") or res.location
        return res
    if isinstance(body.error, Halted) and not isinstance(body.error, SetupFailed):
        return None
    pending = [st for st in props.expectations() if st.prop.kind == "eventually" and st.status == PENDING]
    if props.terminated is not None:
        # The body was cancelled: what it raised on the way out (a parallel() branch reporting
        # its cancellation, say) is the cancellation, not a failure.
        cause = "when terminate_when ended the test"
    elif isinstance(body.error, TestTimeout):
        limit = f" after {case.temporal.timeout:g}s" if case.temporal is not None else ""
        waiting = [st for st in props.expectations() if st.status == PENDING]
        why = "; still pending: " + ", ".join(st.prop.where for st in waiting) if waiting else ""
        res.outcome, res.reason = Outcome.INCONCLUSIVE, f"timed out{limit}{why}"
        return res
    elif body.error is not None:
        return None  # the body failed: judged as any failure, at its line
    else:
        cause = "at the end of the body"
    if pending:
        st = pending[0]
        anchor = " (its anchor never matched)" if st.prop.anchor is not None and not st.armed else ""
        res.outcome = Outcome.FAILED
        res.reason = f"{st.prop.where} never held{anchor} (pending {cause})"
        res.location = str(st.prop.location or "") or res.location
        return res
    res.outcome, res.reason = Outcome.PASSED, ""
    return res


def _violation_reason(st: PropertyState) -> str:
    if st.prop.kind == "always" and st.status == VIOLATED and not st.message.startswith("raised"):
        return f"{st.prop.where} violated: {st.message}"
    return f"{st.prop.where}: its predicate {st.message}"


def add_expectation(host: TestHost, prop: Property) -> None:
    host.properties.add(prop, EXPECT)
    host.count_assertion()


def deadline_for(case: TestCase, default: float) -> float:
    """A test() has its own timeout; other tests have the run's."""
    return case.temporal.timeout if case.temporal is not None else default


__all__ = [
    "BodyStopper",
    "add_expectation",
    "checkpoint",
    "deadline_for",
    "finish",
    "property_set",
    "run_declared",
    "verdict",
]
