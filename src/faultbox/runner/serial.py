"""One spec's tests run one at a time in this process, on one RunContext (supervisor, proxy worker,
reaper started once and shared by the tests, each test with fresh services).

The serial path of `faultbox test` and the pytest plugin's items both run tests through this, so a
test's result does not depend on which of them ran it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType

from faultbox._util.seeds import run_seed
from faultbox.errors import Code, UsageError
from faultbox.model.decisions import Decisions, Site, leaf_count, leaf_decisions
from faultbox.model.result import SEVERITY, LeafRecord, RunRecord, ShrinkRecord, TestResult, Verdict
from faultbox.runner.cell import run_test
from faultbox.runner.context import RunContext
from faultbox.runner.leaf import LeafState
from faultbox.runner.shrink import candidates, describe, fired_faults
from faultbox.spec import Spec

MAX_LEAVES = 4096  # a test whose sites multiply past this is refused, not run for hours


class UnknownTest(UsageError):
    code = Code.NO_TEST_MATCHED


class SpecRunner:
    def __init__(
        self,
        spec: Spec,
        seed: int,
        timeout: float,
        *,
        spec_arg: str = "",
        keep_workdir: bool = False,
        leaf: Decisions | None = None,
        shrink: int = 0,
        concurrent_start: bool = False,
    ) -> None:
        self.spec = spec
        self.seed = seed
        self.timeout = timeout
        self.spec_arg = spec_arg or spec.path
        self._keep_workdir = keep_workdir
        self.forced = leaf  # --leaf: run that one leaf of each test, no fan-out
        self.shrink_runs = shrink  # at most this many runs to shrink a failed test (0: do not)
        self.concurrent_start = concurrent_start
        self.on_run_end: Callable[[], None] = lambda: None  # a test worker tells its runner it is alive
        self._sites: dict[str, list[Site]] = {}  # by test: its discovery run's sites, for its leaves
        self._ctx: RunContext | None = None  # made at the first test: collecting costs nothing

    def run(self, name: str, seed: int | None = None, leaf: LeafState | None = None) -> TestResult:
        """One run of a test, with the run's seed or the one given (a run of --runs N), and the
        decisions `leaf` forces (none: every choice takes its first option, nothing is scheduled)."""
        case = self.spec.test(name)
        if case is None:
            raise UnknownTest(f"no test named {name} in {self.spec_arg}")
        seed = self.seed if seed is None else seed
        if self._ctx is None:
            self._ctx = RunContext(
                self.spec, seed, keep_workdir=self._keep_workdir, concurrent_start=self.concurrent_start
            )
        self._ctx.seed = seed  # read by each test's host: one test at a time on a context
        replay = replay_command(self.spec_arg, name, seed, self.spec.variables)
        if leaf is not None and leaf.forced:
            replay += f" --leaf '{leaf.forced.to_text()}'"
        result = run_test(self._ctx, case, self.timeout, replay, leaf)
        self.on_run_end()
        return result

    def run_fanout(self, name: str, seed: int | None = None) -> TestResult:
        """A test and its leaves: the first (discovery) run records the test's fan-out sites
        (named choose(), max_fires= faults, parallel(interleavings=)); when it met any, every
        combination of their options runs again as a leaf of its own, with fresh services. One
        result: the worst leaf's (the discovery run's when it is the worst), every leaf listed."""
        if self.forced is not None:
            return self.run(name, seed, LeafState(self.forced))
        discovery = LeafState()
        first = self.run(name, seed, discovery)
        sites = self._sites[name] = list(discovery.sites)
        if not sites:
            return first
        count, total_ms = leaf_count(sites), first.duration_ms
        if count > MAX_LEAVES:
            first.leaves = [_record(0, first, "discovery")]
            first.details["leaves_refused"] = (
                f"{count} leaves ({_site_sizes(sites)}) is more than {MAX_LEAVES}: only the discovery run ran; "
                "lower max_fires=, interleavings= or the options of choose()"
            )
            return first
        records = [_record(0, first, "discovery")]
        # The result is the worst leaf's: a leaf replays with every decision forced. The discovery
        # run's only when it alone went worse (a stochastic draw no leaf repeats). A halted leaf
        # (its assume= ruled it out) is not a result of the test while another leaf has one.
        worst = first
        for i in range(count):
            forced = leaf_decisions(sites, i)
            result = self.run(name, seed, LeafState(forced, sites))
            records.append(_record(i + 1, result, _label(sites, forced)))
            if worst is first and _rank(result) >= _rank(first):
                worst.events, worst = [], result  # only the worst keeps its trace
            elif _rank(result) > _rank(worst):
                worst.events, worst = [], result
            else:
                result.events = []
            total_ms += result.duration_ms
        worst.leaves = records
        worst.details["sites"] = [_site_text(s) for s in sites]
        worst.duration_ms = total_ms
        return worst

    def run_repeated(self, name: str, runs: int, runs_all: bool = False) -> TestResult:
        """`--runs N`: the test up to N times, run i with seed run_seed(seed, i), stopping at the
        first run that does not pass (halted aside) unless runs_all. Each run fans out into its
        leaves (run_fanout), and a failed test is shrunk once, at the end."""
        if runs <= 1:
            return self.shrink(name, self.run_fanout(name))
        results: list[TestResult] = []
        for i in range(runs):
            result = self.run_fanout(name, run_seed(self.seed, i))
            if results:  # only the worst run so far keeps its trace: a thousand runs cost one trace
                worst = _worst(results)
                if SEVERITY[result.verdict] > SEVERITY[worst.verdict]:
                    worst.events = []
                else:
                    result.events = []
            results.append(result)
            if not runs_all and SEVERITY[result.verdict] >= SEVERITY[Verdict.INCONCLUSIVE]:
                break
        return self.shrink(name, combine(results))

    def shrink(self, name: str, result: TestResult) -> TestResult:
        """A failed test with several faults, fires, priority changes or choices: look for a
        smaller case that fails the same way (same outcome, same spec line), greedily, within the
        run budget; the smallest found goes in `result.shrunk` next to the original."""
        if self.shrink_runs <= 0 or result.verdict is not Verdict.FAIL:
            return result
        faults = fired_faults(result.faults)
        start = Decisions.from_text(result.details.get("forced") or result.decisions)
        current, smallest, runs = start, None, 0
        improved = True
        while improved and runs < self.shrink_runs:
            improved = False
            for candidate in candidates(current, faults):
                if runs >= self.shrink_runs:
                    break
                attempt = self.run(name, result.seed, LeafState(candidate, self._sites.get(name)))
                runs += 1
                if attempt.outcome is result.outcome and attempt.location == result.location:
                    current, smallest, improved = candidate, attempt, True
                    break
        if smallest is not None:
            result.shrunk = ShrinkRecord(
                decisions=current.to_text(),
                removed=describe(start, current),
                runs=runs,
                reason=smallest.reason,
                replay=smallest.replay,
            )
        return result

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


def _rank(result: TestResult) -> int:
    """How bad a leaf is, for the one result of a test that fanned out: halted below passed."""
    return -1 if result.verdict is Verdict.HALTED else SEVERITY[result.verdict]


def _record(index: int, result: TestResult, label: str) -> LeafRecord:
    return LeafRecord(
        leaf=index,
        decisions=result.decisions,
        outcome=result.outcome,
        label=label,
        reason=result.reason,
        duration_ms=result.duration_ms,
        replay="" if result.verdict is Verdict.PASS else result.replay,
    )


def _label(sites: list[Site], forced: Decisions) -> str:
    """The leaf's choices as a reader names them: mode="safe", db:write=fire/skip, ..."""
    parts = []
    for s in sites:
        if s.kind == "choose":
            index = forced.choices.get(s.key, 0)
            parts.append(f"{s.key}={_short(s.options[index])}")
        elif s.kind == "fires":
            bits = forced.fires.get(s.key, "")
            parts.append(f"{s.key}=" + "/".join("fire" if b == "1" else "skip" for b in bits))
        else:
            schedule = forced.orders.get(s.key)
            parts.append(f"order@{s.key}={schedule.to_text() if schedule else '-'}")
    return ", ".join(parts)


def _short(value: object) -> str:
    from faultbox.spec.values import starlark_repr

    text = starlark_repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _site_text(site: Site) -> str:
    where = f" at {site.location}" if site.location else ""
    return f"{site.kind} {site.key}{where}: {site.size} options"


def _site_sizes(sites: list[Site]) -> str:
    return " x ".join(f"{s.kind} {s.key}: {s.size}" for s in sites)


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
