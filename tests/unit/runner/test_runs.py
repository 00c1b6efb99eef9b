"""--runs and --seed last, without running anything: the seeds of the runs, a test's result from
its runs, the JSON of them, and the last-seed file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faultbox._util.seeds import run_seed
from faultbox.model.event import Event
from faultbox.model.result import Outcome, RunRecord, RunResult, TestResult
from faultbox.runner import last_seed
from faultbox.runner.serial import combine


def test_run_seeds_are_documented_distinct_and_start_at_the_base() -> None:
    assert run_seed(42, 0) == 42
    seeds = [run_seed(42, i) for i in range(200)]
    assert len(set(seeds)) == 200 and all(0 <= s < 1 << 63 for s in seeds[1:])
    assert seeds == [run_seed(42, i) for i in range(200)]  # a derivation, not a random draw
    import hashlib

    assert run_seed(42, 3) == int.from_bytes(hashlib.sha256(b"42|run|3").digest()[:8], "little") & ((1 << 63) - 1)
    assert run_seed(43, 1) not in seeds  # another base, other seeds (base + i would overlap)


def result(outcome: Outcome, seed: int, ms: int = 10, events: int = 0) -> TestResult:
    return TestResult(
        "test_x",
        outcome,
        reason="" if outcome is Outcome.PASSED else f"boom {seed}",
        duration_ms=ms,
        seed=seed,
        replay=f"faultbox test s.star --test test_x --seed {seed}",
        events=[Event("stdout", "a", {"line": str(i)}) for i in range(events)],
    )


def test_a_test_run_several_times_is_its_worst_run() -> None:
    runs = [result(Outcome.PASSED, 1), result(Outcome.FAILED, 2, events=3), result(Outcome.ERRORED, 3)]
    combined = combine(runs)
    assert combined.outcome is Outcome.ERRORED and combined.seed == 3 and combined.reason == "boom 3"
    assert combined.duration_ms == 30
    assert [(r.run, r.seed, r.outcome) for r in combined.runs] == [
        (1, 1, Outcome.PASSED),
        (2, 2, Outcome.FAILED),
        (3, 3, Outcome.ERRORED),
    ]
    assert combined.runs[0].replay == "" and combined.runs[1].replay.endswith("--seed 2")
    assert [r.seed for r in combined.failed_runs] == [2, 3]
    passing = combine([result(Outcome.PASSED, 1, events=2), result(Outcome.PASSED, 2)])
    assert passing.outcome is Outcome.PASSED and passing.seed == 1 and len(passing.events) == 2
    assert passing.failed_runs == []
    halted = combine([result(Outcome.PASSED, 1), result(Outcome.HALTED, 2)])
    assert halted.outcome is Outcome.HALTED and halted.failed_runs == []  # a halt is not a failure


def test_runs_survive_json() -> None:
    test = combine([result(Outcome.PASSED, 1), result(Outcome.FAILED, 2)])
    run = RunResult("s.star", 1, 0.0, tests=[test], runs=5, runs_all=True)
    d = run.to_dict()
    assert d["runs"] == 5 and d["runs_all"] is True
    assert d["tests"][0]["runs"][1] == {
        "run": 2,
        "seed": 2,
        "outcome": "failed",
        "verdict": "fail",
        "reason": "boom 2",
        "duration_ms": 10,
        "replay": "faultbox test s.star --test test_x --seed 2",
    }
    back = RunResult.from_dict(d)
    assert back.runs == 5 and back.runs_all and back.tests[0].runs == test.runs
    assert "runs" not in TestResult("test_once", Outcome.PASSED).to_dict()
    assert RunRecord.from_dict(test.runs[0].to_dict()) == test.runs[0]


def test_last_seed_round_trip(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    with pytest.raises(last_seed.NoLastSeed, match=r"no seed recorded for .*spec\.star yet"):
        last_seed.read(str(spec))
    assert last_seed.write(str(spec), 1234) is None
    assert (tmp_path / ".faultbox" / "last-seed").read_text() == "1234\n"
    assert last_seed.read(str(spec)) == 1234
    assert last_seed.write(str(spec), 99) is None and last_seed.read(str(spec)) == 99
    assert os.listdir(tmp_path / ".faultbox") == ["last-seed"]  # no temporary file left
    (tmp_path / ".faultbox" / "last-seed").write_text("soon\n")
    with pytest.raises(last_seed.NoLastSeed, match="holds 'soon', not a seed"):
        last_seed.read(str(spec))


def test_last_seed_in_a_read_only_directory(tmp_path: Path) -> None:
    (tmp_path / ".faultbox").write_text("a file where the directory would be")
    why = last_seed.write(str(tmp_path / "spec.star"), 5)
    assert why is not None and "cannot write" in why
