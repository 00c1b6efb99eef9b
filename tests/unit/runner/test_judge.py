"""The verdict when services do not start: the service's own failure is a failed test, the
machine's (a supervisor, a shim that cannot be built, a missing server) an errored one."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faultbox.engine.shim_build import ShimBuildError
from faultbox.errors import Code
from faultbox.model.result import Outcome
from faultbox.model.scenario import TestCase
from faultbox.runner.cell import BodyOutcome, judge
from faultbox.runner.services import StartFailure


def _host() -> Any:
    return SimpleNamespace(
        infra_error=None,
        monitors=SimpleNamespace(violation=None),
        mock_handlers=SimpleNamespace(failure=None),
    )


def test_a_service_that_does_not_come_up_fails_the_test() -> None:
    res = judge(TestCase("test_x"), _host(), StartFailure(Code.SERVICE_EXITED, "api: exited 1"), BodyOutcome())
    assert res.outcome is Outcome.FAILED and res.code == "SERVICE_EXITED"


def test_the_machine_failing_while_services_start_errs_the_test() -> None:
    res = judge(TestCase("test_x"), _host(), ShimBuildError("gcc: not found"), BodyOutcome())
    assert res.outcome is Outcome.ERRORED and res.code == "SHIM_BUILD_FAILED"
    assert res.reason.startswith("services did not start: [SHIM_BUILD_FAILED] gcc: not found")
