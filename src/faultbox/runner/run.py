"""Running a loaded spec: select tests, run each in order with fresh services, collect results."""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass

from faultbox.model.result import MatrixCell, MatrixResult, Outcome, RunResult, TestResult
from faultbox.runner.cell import run_test
from faultbox.runner.context import RunContext
from faultbox.runner.listeners import RunListener
from faultbox.runner.proxies import check_assumptions
from faultbox.runner.select import select_tests
from faultbox.spec import Spec


@dataclass
class RunOptions:
    seed: int
    test: str | None = None
    timeout: float = 120.0
    keep_workdir: bool = False
    spec_arg: str = ""  # the spec path as the user wrote it (for replay commands)


class NoTestMatched(Exception):
    def __init__(self, pattern: str, available: list[str]) -> None:
        super().__init__(pattern)
        self.pattern = pattern
        self.available = available


def run_spec(spec: Spec, options: RunOptions, listeners: Sequence[RunListener] = ()) -> RunResult:
    check_assumptions(spec.assumptions.values())
    names = [t.name for t in spec.tests]
    selected = select_tests(names, options.test)
    if options.test and not selected:
        raise NoTestMatched(options.test, names)
    result = RunResult(
        spec=options.spec_arg or spec.path,
        seed=options.seed,
        started=time.time(),
        variables=dict(spec.variables),
        environment=_environment(),
    )
    for listener in listeners:
        listener.run_started(result.spec, options.seed, selected)
    began = time.monotonic()
    ctx = RunContext(spec, options.seed, keep_workdir=options.keep_workdir)
    try:
        for name in selected:
            case = spec.test(name)
            assert case is not None
            for listener in listeners:
                listener.test_started(name)
            extra = "".join(f" --var {k}={v}" for k, v in sorted(spec.variables.items()))
            replay = f"faultbox test {result.spec} --test {name} --seed {options.seed}{extra}"
            test_result = run_test(ctx, case, options.timeout, replay)
            result.tests.append(test_result)
            for listener in listeners:
                listener.test_finished(test_result)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        ctx.close()
    result.duration_ms = int((time.monotonic() - began) * 1000)
    result.matrix = matrix_of(spec, result.tests)
    for listener in listeners:
        listener.run_finished(result)
    return result


def _environment() -> dict[str, str]:
    from faultbox import __version__

    return {
        "faultbox": __version__,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "machine": platform.machine(),
    }


def matrix_of(spec: Spec, tests: list[TestResult]) -> MatrixResult | None:
    if not spec.matrices:
        return None
    by_name = {t.name: t for t in tests}
    scenarios: list[str] = []
    assumptions: list[str] = []
    cells: list[MatrixCell] = []
    for matrix in spec.matrices:
        scenarios.extend(s for s in matrix.scenarios if s not in scenarios)
        assumptions.extend(a for a in matrix.assumptions if a not in assumptions)
        ran = {(c.matrix[0], c.matrix[1]): c for c in matrix.cells if c.matrix}
        for s in matrix.scenarios:
            for a in matrix.assumptions:
                fs = ran.get((s, a))
                if fs is None:
                    cells.append(MatrixCell(s, a, "", None, "excluded"))
                    continue
                t = by_name.get(fs.test_name)
                if t is None:
                    continue  # not selected in this run
                cells.append(MatrixCell(s, a, t.name, t.outcome, t.reason, t.duration_ms))
    if not any(c.outcome is not None for c in cells):
        return None
    return MatrixResult(scenarios, assumptions, cells)


__all__ = ["NoTestMatched", "Outcome", "RunOptions", "run_spec"]
