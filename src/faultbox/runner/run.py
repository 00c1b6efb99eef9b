"""Running a loaded spec: select tests (and this machine's shard of them), run them with fresh
services - one after another in this process, or several at once in test workers (pool.py) - and
collect the results in the suite's order."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from faultbox.engine.isolation import IsolationError, check_available
from faultbox.errors import Code, UsageError
from faultbox.model.decisions import Decisions
from faultbox.model.result import MatrixCell, MatrixResult, Outcome, RunResult, Shard, TestResult
from faultbox.runner import durations
from faultbox.runner.listeners import RunListener
from faultbox.runner.pool import Job, WorkerPool
from faultbox.runner.proxies import check_assumptions
from faultbox.runner.select import select_tests, shard_of
from faultbox.runner.serial import SpecRunner
from faultbox.spec import NoTestsDiscovered, Spec


@dataclass
class RunOptions:
    seed: int
    test: str | None = None
    timeout: float = 120.0
    keep_workdir: bool = False
    spec_arg: str = ""  # the spec path as the user wrote it (for replay commands)
    # Tests at once: 1 in this process (the default for callers of run_spec); None: as many as pays
    # (one per core, one per four tests) where workers can isolate, what the command line does.
    jobs: int | None = 1
    shard: tuple[int, int] | None = None  # (K, N): run only the K-th of N parts of the suite
    # Keep each test's duration beside the spec (.faultbox/durations.json): parallel runs start the
    # longest tests first. The command line does; callers of run_spec opt in.
    record_durations: bool = False
    # --runs N: each test up to N times with seeds derived from `seed` (_util/seeds.run_seed),
    # stopping at its first failing run unless runs_all.
    runs: int = 1
    runs_all: bool = False
    leaf: Decisions | None = None  # --leaf: every test runs with these decisions, and does not fan out
    shrink: int = 0  # runs to spend shrinking each failed test (the command line: 20)
    concurrent_start: bool = False  # services start as soon as their depends_on are ready


class NoTestMatched(UsageError):
    code = Code.NO_TEST_MATCHED

    def __init__(self, pattern: str, available: list[str]) -> None:
        super().__init__(f'no test matched "{pattern}"')
        self.pattern = pattern
        self.available = available


def run_spec(spec: Spec, options: RunOptions, listeners: Sequence[RunListener] = ()) -> RunResult:
    if not spec.tests:
        raise NoTestsDiscovered(options.spec_arg or spec.path)
    check_assumptions(spec.assumptions.values())
    names = [t.name for t in spec.tests]
    selected = select_tests(names, options.test)
    if options.test and not selected:
        raise NoTestMatched(options.test, names)
    shard = None
    if options.shard is not None:
        index, count = options.shard
        shard = Shard(index, count, tuple(selected))
        selected = shard_of(selected, index, count)
    jobs = workers_for(options, len(selected))
    result = RunResult(
        spec=options.spec_arg or spec.path,
        seed=options.seed,
        started=time.time(),
        variables=dict(spec.variables),
        environment=_environment(),
        shard=shard,
        runs=options.runs,
        runs_all=options.runs_all and options.runs > 1,
    )
    for listener in listeners:
        listener.run_started(result, selected)

    def started(name: str) -> None:
        for listener in listeners:
            listener.test_started(name)

    def finished(test_result: TestResult) -> None:
        result.tests.append(test_result)
        for listener in listeners:
            listener.test_finished(test_result)

    began = time.monotonic()
    try:
        if jobs > 1:
            job = Job(
                spec.path,
                dict(spec.variables),
                options.seed,
                options.timeout,
                result.spec,
                _budget(spec),
                runs=options.runs,
                runs_all=options.runs_all,
                leaf=options.leaf.to_text() if options.leaf else "",
                shrink=options.shrink,
                concurrent_start=options.concurrent_start,
            )
            dispatch = durations.Dispatch(selected, durations.load(spec.path), jobs)
            WorkerPool(job, jobs).run(dispatch.order, started, finished, dispatch.pick)
        else:
            _run_serially(spec, options, result.spec, selected, started, finished)
    except KeyboardInterrupt:
        result.interrupted = True
    if options.record_durations:
        durations.save(spec.path, result.tests)
    result.duration_ms = int((time.monotonic() - began) * 1000)
    order = {name: i for i, name in enumerate(selected)}
    result.tests.sort(key=lambda t: order[t.name])  # the suite's order, however many ran at once
    result.matrix = matrix_of(spec, result.tests)
    for listener in listeners:
        listener.run_finished(result)
    return result


def _run_serially(
    spec: Spec,
    options: RunOptions,
    spec_arg: str,
    selected: list[str],
    started: Callable[[str], None],
    finished: Callable[[TestResult], None],
) -> None:
    with SpecRunner(
        spec,
        options.seed,
        options.timeout,
        spec_arg=spec_arg,
        keep_workdir=options.keep_workdir,
        leaf=options.leaf,
        shrink=options.shrink,
        concurrent_start=options.concurrent_start,
    ) as tests:
        for name in selected:
            started(name)
            finished(tests.run_repeated(name, options.runs, options.runs_all))


_TESTS_PER_WORKER = 4  # by default: a worker costs about half a second to start; fewer tests run serially


def workers_for(options: RunOptions, tests: int) -> int:
    """How many test workers: --jobs as asked (checked: workers must be able to isolate), or by
    default one per core and at most one per _TESTS_PER_WORKER tests, where workers can isolate;
    1 runs the tests in this process, one after another. Keeping the work directory needs it
    outside a worker's private /tmp: that run is serial."""
    if options.keep_workdir or tests < 2:
        return 1
    if options.jobs is not None:
        if options.jobs > 1:
            try:
                check_available()
            except IsolationError as exc:
                raise WorkersUnavailable(str(exc)) from None
        return max(1, min(options.jobs, tests))
    wanted = min(_cores(), tests // _TESTS_PER_WORKER)
    if wanted < 2:
        return 1
    try:
        check_available()
    except IsolationError:
        return 1
    return wanted


def _cores() -> int:
    """The cores this process may run on (a pinned container's, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _budget(spec: Spec) -> float:
    """What a test may spend beyond its deadline: every service's healthcheck and stop grace."""
    return sum((s.healthcheck.timeout if s.healthcheck else 0.0) + s.stop_grace for s in spec.services.values())


class WorkersUnavailable(UsageError):
    code = Code.ISOLATION_UNAVAILABLE

    def __init__(self, why: str) -> None:
        super().__init__(
            f"--jobs: tests cannot run in parallel workers here: {why}. Each worker needs its own network "
            "namespace and /tmp"
        )


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
                leaves = (len(t.leaves) - len(t.failed_leaves), len(t.leaves)) if t.leaves else None
                cells.append(MatrixCell(s, a, t.name, t.outcome, t.reason, t.duration_ms, leaves))
    if not any(c.outcome is not None for c in cells):
        return None
    # One layout whatever the matrices: scenario by scenario, then fault by fault (merged shards
    # rebuild the same order).
    cells.sort(key=lambda c: (scenarios.index(c.scenario), assumptions.index(c.assumption)))
    return MatrixResult(scenarios, assumptions, cells)


__all__ = ["NoTestMatched", "Outcome", "RunOptions", "run_spec"]
