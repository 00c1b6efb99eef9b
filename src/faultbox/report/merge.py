"""`faultbox report merge A.json B.json ...`: the results of the N shards of one suite, read as the
one run they split. Tests come back in the suite's order and the matrix in the spec's layout, so the
merged reports read as an unsharded run's; what cannot be joined (a missing or repeated shard,
shards of another suite, seed or variables) is refused with the file that differs."""

from __future__ import annotations

from collections.abc import Sequence

from faultbox.errors import Code, UsageError
from faultbox.model.result import MatrixCell, MatrixResult, RunResult


class MergeError(UsageError):
    """Shard results that do not make one run."""

    code = Code.MERGE_REFUSED


def merge_runs(runs: Sequence[tuple[str, RunResult]]) -> RunResult:
    if not runs:
        raise MergeError("name the result files of the shards to merge")
    first_path, first = runs[0]
    for path, run in runs:
        if run.shard is None:
            raise MergeError(f"{path}: not a shard's result; write one with faultbox test --shard K/N --output FILE")
    assert first.shard is not None
    count = first.shard.count
    seen: dict[int, str] = {}
    for path, run in runs:
        assert run.shard is not None
        for what, mine, theirs in (
            ("spec", run.spec, first.spec),
            ("shard count", run.shard.count, count),
            ("test list", run.shard.suite, first.shard.suite),
            ("seed", run.seed, first.seed),
            ("variables", run.variables, first.variables),
            ("--runs", (run.runs, run.runs_all), (first.runs, first.runs_all)),
        ):
            if mine != theirs:
                raise MergeError(
                    f"{path}: its {what} differs from {first_path}'s; merge the shards of one run "
                    "(the same spec, --seed, --var, --runs and shard count on every machine)"
                )
        if run.shard.index in seen:
            raise MergeError(f"{path}: shard {run.shard.index}/{count} again (also in {seen[run.shard.index]})")
        seen[run.shard.index] = path
    missing = [str(k) for k in range(1, count + 1) if k not in seen]
    if missing:
        raise MergeError(f"shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} of {count} missing")
    order = {name: i for i, name in enumerate(first.shard.suite)}
    tests = sorted((t for _, run in runs for t in run.tests), key=lambda t: order.get(t.name, len(order)))
    names = [t.name for t in tests]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise MergeError(f"test{'s' if len(twice) > 1 else ''} {', '.join(twice)} ran in more than one shard")
    interrupted = any(run.interrupted for _, run in runs)
    missing = [n for n in first.shard.suite if n not in set(names)]
    if missing and not interrupted:  # shards split by another faultbox, or edited files
        raise MergeError(
            f"no shard ran {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}: run every shard "
            "with the same faultbox version"
        )
    start = min(run.started for _, run in runs)
    end = max(run.started + run.duration_ms / 1000 for _, run in runs)
    return RunResult(
        spec=first.spec,
        seed=first.seed,
        started=start,
        duration_ms=int((end - start) * 1000),
        tests=tests,
        matrix=_merged_matrix([run.matrix for _, run in runs]),
        interrupted=interrupted,
        variables=dict(first.variables),
        environment=dict(first.environment),
        runs=first.runs,
        runs_all=first.runs_all,
    )


def _merged_matrix(parts: list[MatrixResult | None]) -> MatrixResult | None:
    """Each shard's matrix lists every scenario and assumption, and the cells it ran (or that are
    excluded); the merged one has every cell some shard ran, in the spec's layout."""
    present = [m for m in parts if m is not None]
    if not present:
        return None
    cells: dict[tuple[str, str], MatrixCell] = {}
    for m in present:
        for c in m.cells:
            if c.outcome is not None or (c.scenario, c.assumption) not in cells:
                cells[(c.scenario, c.assumption)] = c
    scenarios, assumptions = present[0].scenarios, present[0].assumptions
    ordered = [cells[(s, a)] for s in scenarios for a in assumptions if (s, a) in cells]
    return MatrixResult(list(scenarios), list(assumptions), ordered)
