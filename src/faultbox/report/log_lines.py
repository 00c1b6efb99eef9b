"""`--log-format json`: the run's progress as JSON lines, one object per line, for log collectors
and CI systems that parse what a job prints (the console reporter's plain-text lines otherwise).

    {"ts": 1764927000.123, "level": "info", "msg": "run started", "spec": "shop.star", "seed": 7, "tests": 33}
    {"ts": ..., "level": "info", "msg": "test started", "test": "test_create_order"}
    {"ts": ..., "level": "error", "msg": "test finished", "test": "test_x", "outcome": "failed",
     "verdict": "fail", "duration_ms": 812, "reason": "...", "location": "shop.star:40", "replay": "..."}
    {"ts": ..., "level": "info", "msg": "run finished", "passed": 32, "failed": 1, ..., "exit_code": 2}

A finished test's line is at level "info" when it passed, "warning" when it passed with warnings or
was inconclusive or halted, and "error" otherwise. Every line is flushed as it is written."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import IO, Any

from faultbox.model.result import RunResult, TestResult, Verdict


class JsonLinesReporter:
    def __init__(self, stream: IO[str]) -> None:
        self._out = stream

    def _line(self, level: str, msg: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "level": level, "msg": msg, **fields}
        self._out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._out.flush()

    def run_started(self, run: RunResult, tests: Sequence[str]) -> None:
        self._line("info", "run started", spec=run.spec, seed=run.seed, tests=len(tests))

    def test_started(self, name: str) -> None:
        self._line("info", "test started", test=name)

    def test_finished(self, result: TestResult) -> None:
        fields: dict[str, Any] = {
            "test": result.name,
            "outcome": result.outcome.value,
            "verdict": result.verdict.value,
            "duration_ms": result.duration_ms,
        }
        for key in ("reason", "location", "code", "replay", "bundle"):
            value = getattr(result, key)
            if value and (key != "replay" or result.verdict is not Verdict.PASS):
                fields[key] = value
        if result.matrix is not None:
            fields["cell"] = {"scenario": result.matrix[0], "fault": result.matrix[1]}
        if result.runs:
            fields["runs"] = len(result.runs)
            fields["failed_seeds"] = [r.seed for r in result.failed_runs]
        if result.leaves:
            fields["leaves"] = len(result.leaves)
            fields["failed_leaves"] = [leaf.decisions for leaf in result.failed_leaves]
        if result.shrunk is not None:
            fields["shrunk"] = result.shrunk.decisions
        if result.diagnostics:
            fields["warnings"] = [d.code for d in result.diagnostics]
        self._line(_level(result), "test finished", **fields)

    def run_finished(self, result: RunResult) -> None:
        counts = result.counts()
        self._line(
            "info" if result.exit_code == 0 else "error",
            "run finished",
            passed=counts["pass"],
            failed=counts["fail"],
            errored=counts["error"],
            inconclusive=counts["inconclusive"],
            halted=counts["halted"],
            interrupted=result.interrupted,
            duration_ms=result.duration_ms,
            exit_code=int(result.exit_code),
        )


def _level(result: TestResult) -> str:
    if result.verdict is Verdict.PASS:
        return "warning" if result.diagnostics else "info"
    if result.verdict in (Verdict.INCONCLUSIVE, Verdict.HALTED):
        return "warning"
    return "error"


__all__ = ["JsonLinesReporter"]
