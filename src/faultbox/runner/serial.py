"""One spec's tests run one at a time in this process, on one RunContext (supervisor, proxy worker,
reaper started once and shared by the tests, each test with fresh services).

The serial path of `faultbox test` and the pytest plugin's items both run tests through this, so a
test's result does not depend on which of them ran it."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType

from faultbox._util.seeds import run_seed
from faultbox.errors import Code, UsageError
from faultbox.model.result import SEVERITY, RunRecord, TestResult, Verdict
from faultbox.runner.cell import run_test
from faultbox.runner.context import RunContext
from faultbox.spec import Spec


class UnknownTest(UsageError):
    code = Code.NO_TEST_MATCHED


class SpecRunner:
    def __init__(
        self, spec: Spec, seed: int, timeout: float, *, spec_arg: str = "", keep_workdir: bool = False
    ) -> None:
        self.spec = spec
        self.seed = seed
        self.timeout = timeout
        self.spec_arg = spec_arg or spec.path
        self._keep_workdir = keep_workdir
        self._ctx: RunContext | None = None  # made at the first test: collecting costs nothing

    def run(self, name: str, seed: int | None = None) -> TestResult:
        """One run of a test, with the run's seed or the one given (a run of --runs N)."""
        case = self.spec.test(name)
        if case is None:
            raise UnknownTest(f"no test named {name} in {self.spec_arg}")
        seed = self.seed if seed is None else seed
        if self._ctx is None:
            self._ctx = RunContext(self.spec, seed, keep_workdir=self._keep_workdir)
        self._ctx.seed = seed  # read by each test's host: one test at a time on a context
        replay = replay_command(self.spec_arg, name, seed, self.spec.variables)
        return run_test(self._ctx, case, self.timeout, replay)

    def run_repeated(self, name: str, runs: int, runs_all: bool = False) -> TestResult:
        """`--runs N`: the test up to N times, run i with seed run_seed(seed, i), stopping at the
        first run that does not pass (halted aside) unless runs_all. One run is just `run`."""
        if runs <= 1:
            return self.run(name)
        results: list[TestResult] = []
        for i in range(runs):
            result = self.run(name, run_seed(self.seed, i))
            if results:  # only the worst run so far keeps its trace: a thousand runs cost one trace
                worst = _worst(results)
                if SEVERITY[result.verdict] > SEVERITY[worst.verdict]:
                    worst.events = []
                else:
                    result.events = []
            results.append(result)
            if not runs_all and SEVERITY[result.verdict] >= SEVERITY[Verdict.INCONCLUSIVE]:
                break
        return combine(results)

    def close(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.close()

    def __enter__(self) -> SpecRunner:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def replay_command(spec_arg: str, name: str, seed: int, variables: Mapping[str, str]) -> str:
    extra = "".join(f" --var {k}={v}" for k, v in sorted(variables.items()))
    return f"faultbox test {spec_arg} --test {name} --seed {seed}{extra}"


def _worst(results: list[TestResult]) -> TestResult:
    """The run whose verdict is the worst, the first of them (the first run when all passed)."""
    worst = results[0]
    for r in results[1:]:
        if SEVERITY[r.verdict] > SEVERITY[worst.verdict]:
            worst = r
    return worst


def combine(results: list[TestResult]) -> TestResult:
    """One result for a test run several times: its worst run's result, with every run listed and
    the time of all of them."""
    worst = _worst(results)
    worst.runs = [
        RunRecord(
            run=i,
            seed=r.seed,
            outcome=r.outcome,
            reason=r.reason,
            duration_ms=r.duration_ms,
            replay="" if r.verdict is Verdict.PASS else r.replay,
        )
        for i, r in enumerate(results, 1)
    ]
    worst.duration_ms = sum(r.duration_ms for r in results)
    return worst
