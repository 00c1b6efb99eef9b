"""Longest tests first in a parallel run, from the durations the last run kept beside the spec."""

from __future__ import annotations

from pathlib import Path

from faultbox.model.result import Outcome, TestResult
from faultbox.runner import durations


def test_unknown_tests_first_then_the_longest_ties_in_suite_order() -> None:
    known = {"a": 100, "b": 9000, "c": 100, "e": 50}
    assert durations.longest_first(["a", "b", "c", "d", "e"], known) == ["d", "b", "a", "c", "e"]
    assert durations.longest_first(["x", "y"], {}) == ["x", "y"]


def test_saved_beside_the_spec_merged_with_what_was_known(tmp_path: Path) -> None:
    spec = tmp_path / "shop.star"
    durations.save(str(spec), [TestResult("test_a", Outcome.PASSED, duration_ms=1200)])
    durations.save(str(spec), [TestResult("test_b", Outcome.FAILED, duration_ms=30)])
    assert (tmp_path / ".faultbox" / "durations.json").exists()
    assert durations.load(str(spec)) == {"test_a": 1200, "test_b": 30}


def test_an_unusable_cache_is_ignored(tmp_path: Path) -> None:
    spec = tmp_path / "shop.star"
    (tmp_path / ".faultbox").mkdir()
    (tmp_path / ".faultbox" / "durations.json").write_text("not json")
    assert durations.load(str(spec)) == {}
    (tmp_path / ".faultbox" / "durations.json").write_text('{"test_a": "slow", "test_b": 5, "test_c": true}')
    assert durations.load(str(spec)) == {"test_b": 5}
    (tmp_path / ".faultbox").chmod(0o500)
    try:
        durations.save(str(tmp_path / "other" / "x.star"), [])  # no directory: nothing raised
    finally:
        (tmp_path / ".faultbox").chmod(0o700)
