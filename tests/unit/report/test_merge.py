"""faultbox report merge: shards read back as the one run they split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faultbox.cli.main import main
from faultbox.model.event import Event
from faultbox.model.result import (
    Diagnostic,
    FaultRecord,
    MatrixCell,
    MatrixResult,
    Outcome,
    RunResult,
    Shard,
    TestResult,
    Violation,
)
from faultbox.report import json_results
from faultbox.report.merge import MergeError, merge_runs
from faultbox.runner.select import shard_of

SUITE = ("test_a", "test_b", "test_matrix_s1_f1", "test_matrix_s1_f2", "test_matrix_s2_f1", "test_c")
SCENARIOS, FAULTS = ["s1", "s2"], ["f1", "f2"]


def _test(name: str) -> TestResult:
    ev = Event("stdout", "svc", {"line": name}, ts=1000.0 + len(name))
    ev.seq = 1
    failed = name == "test_b"
    cell = tuple(name.split("_")[2:4]) if "matrix" in name else None
    return TestResult(
        name,
        Outcome.FAILED if failed else Outcome.PASSED,
        reason="boom" if failed else "",
        duration_ms=len(name),
        seed=3,
        events=[ev],
        violation=Violation("m", "broke", 1, ev.to_dict()) if failed else None,
        faults=[FaultRecord("svc", "write", "deny(EIO)", ["write"], matched=2, fired=1)],
        diagnostics=[Diagnostic("warning", "FAULT_NOT_FIRED", "never fired", service="svc")],
        matrix=cell,  # type: ignore[arg-type]
    )


def _matrix(tests: list[TestResult]) -> MatrixResult | None:
    ran = {t.matrix: t for t in tests if t.matrix}
    cells = []
    for s in SCENARIOS:
        for f in FAULTS:
            if (s, f) == ("s2", "f2"):
                cells.append(MatrixCell(s, f, "", None, "excluded"))
            elif (s, f) in ran:
                t = ran[(s, f)]
                cells.append(MatrixCell(s, f, t.name, t.outcome, t.reason, t.duration_ms))
    return MatrixResult(SCENARIOS, FAULTS, cells) if ran else None


def _run(names: list[str], shard: Shard | None = None, started: float = 100.0) -> RunResult:
    tests = [_test(n) for n in names]
    return RunResult("shop.star", 3, started, 1000, tests, _matrix(tests), variables={"X": "1"}, shard=shard)


def _shards(count: int) -> list[RunResult]:
    return [
        _run(shard_of(list(SUITE), k, count), Shard(k, count, SUITE), started=100.0 + k) for k in range(1, count + 1)
    ]


@pytest.mark.parametrize("count", [1, 2, 3, 6])
def test_merged_shards_equal_the_unsharded_run(count: int) -> None:
    whole = _run(list(SUITE))
    shards = list(reversed(_shards(count)))  # the files' order does not matter
    merged = merge_runs([(f"s{i}.json", r) for i, r in enumerate(shards)])
    a, b = merged.to_dict(), whole.to_dict()
    for d in (a, b):
        d.pop("started"), d.pop("duration_ms")
    assert a == b
    assert merged.exit_code == whole.exit_code


def test_a_result_survives_its_json(tmp_path: Path) -> None:
    run = _shards(2)[0]
    path = tmp_path / "r.json"
    json_results.write(run, str(path))
    back = json_results.read(str(path))
    assert back.to_dict() == run.to_dict()
    assert back.shard == run.shard


def test_what_cannot_be_merged_is_refused() -> None:
    one = _shards(2)[0]
    with pytest.raises(MergeError, match="shard 2 of 2 missing"):
        merge_runs([("a.json", one)])
    with pytest.raises(MergeError, match=r"b\.json: shard 1/2 again"):
        merge_runs([("a.json", one), ("b.json", one)])
    other_seed = _shards(2)[1]
    other_seed.seed = 4
    with pytest.raises(MergeError, match=r"b\.json: its seed differs"):
        merge_runs([("a.json", one), ("b.json", other_seed)])
    with pytest.raises(MergeError, match="not a shard"):
        merge_runs([("a.json", one), ("c.json", _run(["test_a"]))])


def test_the_merge_command_writes_reports_and_exits_as_the_run_would(tmp_path: Path) -> None:
    files = []
    for run in _shards(3):
        assert run.shard is not None
        path = tmp_path / f"shard{run.shard.index}.json"
        json_results.write(run, str(path))
        files.append(str(path))
    out, junit, html = tmp_path / "all.json", tmp_path / "all.xml", tmp_path / "all.html"
    code = main(["report", "merge", *files, "--output", str(out), "--junit", str(junit), "--html", str(html)])
    assert code == 2  # test_b failed in shard whichever
    data = json.loads(out.read_text())
    assert [t["name"] for t in data["tests"]] == list(SUITE)
    assert data["shard"] is None and data["counts"]["fail"] == 1
    assert junit.read_text().count("<testcase") == len(SUITE)
    assert "test_matrix_s2_f1" in html.read_text()
    assert main(["report", "merge", *files[:2]]) == 1


def test_shards_that_do_not_cover_the_suite_exactly_once_are_refused() -> None:
    one, two = _shards(2)
    doubled = _run([two.tests[0].name, *[t.name for t in one.tests]], one.shard, 100.0)
    with pytest.raises(MergeError, match="ran in more than one shard"):
        merge_runs([("a.json", doubled), ("b.json", two)])
    short = _run([t.name for t in two.tests][1:], two.shard, 101.0)
    with pytest.raises(MergeError, match=f"no shard ran {two.tests[0].name}"):
        merge_runs([("a.json", one), ("b.json", short)])
    short.interrupted = True  # a shard cut short: what it ran still merges, marked interrupted
    assert merge_runs([("a.json", one), ("b.json", short)]).interrupted
