"""--output while the run goes on: valid JSON after every test, each test costing its own bytes."""

from __future__ import annotations

import json
from pathlib import Path

from faultbox.model.event import Event
from faultbox.model.result import Outcome, RunResult, TestResult
from faultbox.report import json_results


def _test(i: int) -> TestResult:
    ev = Event("stdout", "svc", {"line": "x" * 100})
    ev.seq = 1
    return TestResult(f"test_{i:03d}", Outcome.PASSED, duration_ms=i, events=[ev])


def _written() -> int:
    """Bytes this process has written so far (every write call, whatever the file)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def test_the_file_parses_after_every_test_and_grows_by_each_test_only(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    partial = json_results.PartialResults(str(path))
    before = _written()
    partial.run_started(RunResult(spec="spec.star", seed=7, started=0.0), [])
    for i in range(300):
        partial.test_finished(_test(i))
    written = _written() - before
    size = path.stat().st_size
    assert written < 2 * size, f"{written} bytes written for a {size}-byte file: each test must cost its own bytes"
    data = json.loads(path.read_text())
    assert data["interrupted"] is True and len(data["tests"]) == 300
    partial.test_finished(_test(300))
    assert len(json.loads(path.read_text())["tests"]) == 301  # valid JSON after every test
    loaded = json_results.read(str(path))
    assert loaded.interrupted and [t.name for t in loaded.tests][-1] == "test_300"
    assert loaded.tests[5].events[0].fields["line"] == "x" * 100
    partial.run_finished(RunResult("spec.star", 7, 0.0, tests=loaded.tests))
    json_results.write(RunResult("spec.star", 7, 0.0, tests=loaded.tests), str(path))
    assert json_results.read(str(path)).interrupted is False


def test_a_file_cut_short_in_a_write_reads_up_to_its_last_whole_test(tmp_path: Path) -> None:
    """A kill can end a long write at a page boundary: whatever byte the file ends at, reading it
    gives the run's tests up to the last one written whole, marked interrupted."""
    path = tmp_path / "r.json"
    partial = json_results.PartialResults(str(path))
    partial.run_started(RunResult(spec="spec.star", seed=7, started=0.0), [])
    for i in range(3):
        partial.test_finished(_test(i))
    whole = path.read_bytes()
    third = whole.rindex(b"\n", 0, whole.rindex(b"test_002")) + 1  # where the third test's line starts
    cut = tmp_path / "cut.json"
    for end in range(third - 2, len(whole) - len(b"\n]}\n")):
        cut.write_bytes(whole[:end])
        result = json_results.read(str(cut))
        assert result.interrupted and result.seed == 7
        kept = [t.name for t in result.tests]
        assert kept in (["test_000", "test_001"], ["test_000", "test_001", "test_002"]), end
    cut.write_bytes(whole[:third])
    assert [t.name for t in json_results.read(str(cut)).tests] == ["test_000", "test_001"]
    cut.write_bytes(b'{"schema": 1, "tests": [\n{"name": ')  # not a partial results file's header
    try:
        json_results.read(str(cut))
    except json_results.ResultsError as exc:
        assert "not JSON" in str(exc)
    else:
        raise AssertionError("a torn file that is not a run's partial results is refused")


def test_a_file_damaged_before_its_end_is_refused_without_a_parse_per_line(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    partial = json_results.PartialResults(str(path))
    partial.run_started(RunResult(spec="spec.star", seed=7, started=0.0), [])
    for i in range(2000):
        partial.test_finished(_test(i))
    lines = path.read_text().split("\n")
    lines[5] = lines[5][:40]  # a line torn in the middle of the file: not what a kill leaves
    path.write_text("\n".join(lines))
    try:
        json_results.read(str(path))
    except json_results.ResultsError as exc:
        assert "not JSON" in str(exc)
    else:
        raise AssertionError("a file damaged in its middle is refused")


def test_a_killed_shard_leaves_a_file_that_names_its_shard_and_variables(tmp_path: Path) -> None:
    from faultbox.model.result import Shard

    path = tmp_path / "shard.json"
    partial = json_results.PartialResults(str(path))
    run = RunResult(spec="spec.star", seed=7, started=0.0, variables={"ENV": "ci"}, shard=Shard(2, 3, ("a", "b", "c")))
    partial.run_started(run, ["b"])
    partial.test_finished(_test(0))  # and the runner is killed here: run_finished never comes
    back = json_results.read(str(path))
    assert back.interrupted
    assert back.shard is not None and (back.shard.index, back.shard.count, back.shard.suite) == (2, 3, ("a", "b", "c"))
    assert back.variables == {"ENV": "ci"}
    assert [t.name for t in back.tests] == [_test(0).name]
