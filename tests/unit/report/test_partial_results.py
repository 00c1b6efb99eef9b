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
    partial.run_started("spec.star", 7, [])
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
