"""The one lifecycle contract reporters plug into. The runner calls these in order:

    run_started(run, tests)           run: the RunResult as it starts (spec, seed, shard, variables...)
        test_started(name)            for each selected test
        test_finished(result)
    run_finished(result)

Run serially, tests start in the suite's order and each finishes before the next starts. With
--jobs N, up to N tests are in flight: each test_finished follows its own test_started, in the order
the tests end; run_finished's result lists them in the suite's order again.

Reporters (console, JSON, JUnit, HTML) are listeners or read the RunResult afterwards; none of them
is a special case inside the runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from faultbox.model.result import RunResult, TestResult


class RunListener(Protocol):
    def run_started(self, run: RunResult, tests: Sequence[str]) -> None: ...

    def test_started(self, name: str) -> None: ...

    def test_finished(self, result: TestResult) -> None: ...

    def run_finished(self, result: RunResult) -> None: ...
