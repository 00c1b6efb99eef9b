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


# A suite like the shop's: three tests that mostly wait on their faults, the rest a second or two.
SHOP_LIKE = {"slow_a": 14000, "slow_b": 13000, "slow_c": 11000, **{f"s{i}": 2000 - 10 * i for i in range(1, 11)}}


def test_long_tests_are_kept_apart_two_workers_one_long_at_a_time() -> None:
    dispatch = durations.Dispatch(list(SHOP_LIKE), SHOP_LIKE, jobs=2)
    waiting = list(dispatch.order)
    assert waiting[:3] == ["slow_a", "slow_b", "slow_c"]
    assert [n for n in waiting if dispatch.is_long(n)] == ["slow_a", "slow_b", "slow_c"]
    assert dispatch.pick(waiting, []) == 0  # nothing long running: the longest
    waiting.pop(0)
    assert waiting[dispatch.pick(waiting, ["slow_a"])] == "s1"  # the other worker takes short ones
    assert dispatch.pick(waiting, ["s1"]) == 0  # the long one's worker is free again: the next long


def test_only_long_tests_left_are_started_anyway() -> None:
    dispatch = durations.Dispatch(["s1", "slow_b", "slow_a"], SHOP_LIKE, jobs=2)
    assert dispatch.order == ["slow_a", "slow_b", "s1"]
    assert dispatch.pick(["slow_b", "slow_c"], ["slow_a"]) == 0


def test_a_long_test_is_not_held_back_when_the_short_ones_left_cannot_fill_its_time() -> None:
    # two 10 s tests and 4 s of short ones on two workers: holding the second long test back until
    # the short ones ran out would end the run at ~14 s instead of ~12 s
    few = {"long_a": 10000, "long_b": 10000, "s1": 1000, "s2": 1000, "s3": 1000, "s4": 1000}
    dispatch = durations.Dispatch(list(few), few, jobs=2)
    assert dispatch.is_long("long_b")
    assert dispatch.pick(dispatch.order[1:], ["long_a"]) == 0
    # with 12 s of short work the second waits, until what is left of it is less than its 10 s
    many = {"long_a": 10000, "long_b": 10000, **{f"s{i:02d}": 1000 for i in range(12)}}
    dispatch = durations.Dispatch(list(many), many, jobs=2)
    waiting = dispatch.order[1:]  # long_b, s00 ... s11
    assert waiting[dispatch.pick(waiting, ["long_a"])] == "s00"  # 12 s of short work left
    ten = [waiting[0], *waiting[3:]]  # s00 and s01 taken: 10 s left, still held
    assert ten[dispatch.pick(ten, ["long_a"])] == "s02"
    nine = [waiting[0], *waiting[4:]]  # 9 s left: long_b starts
    assert dispatch.pick(nine, ["long_a"]) == 0


def test_four_workers_run_two_long_tests_at_once() -> None:
    dispatch = durations.Dispatch(list(SHOP_LIKE), SHOP_LIKE, jobs=4)
    assert dispatch.order[1:][dispatch.pick(dispatch.order[1:], ["slow_a"])] == "slow_b"  # joins it
    waiting = dispatch.order[2:]
    assert waiting[dispatch.pick(waiting, ["slow_a", "slow_b"])] == "s1"


def test_without_history_or_with_even_tests_nothing_is_long() -> None:
    fresh = durations.Dispatch(["b", "a", "c"], {}, jobs=2)
    assert fresh.order == ["b", "a", "c"]
    assert not any(map(fresh.is_long, "abc"))
    assert fresh.pick(["a", "c"], ["b"]) == 0
    even = durations.Dispatch(["a", "b", "c"], {"a": 2000, "b": 2500, "c": 1500}, jobs=2)
    assert not any(map(even.is_long, "abc"))
    # a test the cache does not know is not long: it goes first, in the suite's order
    partial = durations.Dispatch(["new", "s1", "slow_a"], SHOP_LIKE, jobs=2)
    assert partial.order == ["new", "slow_a", "s1"]
    assert not partial.is_long("new")


def test_a_workers_first_start_is_not_counted_as_the_tests_own(tmp_path: Path) -> None:
    def result(name: str, start: int, body: int) -> TestResult:
        return TestResult(name, Outcome.PASSED, duration_ms=start + body + 50, timings={"start_ms": start})

    spec = tmp_path / "spec.star"
    first = result("test_first", start=6000, body=900)  # paid the worker's one-time starts
    later = [result("test_b", 1100, 900), result("test_c", 1200, 10_000), result("test_d", 1000, 800)]
    later.append(result("test_e", 1100, 900))
    durations.save(str(spec), [first, *later])
    known = durations.load(str(spec))  # each start counted as the median start, 1100 ms
    assert known == {"test_first": 2050, "test_b": 2050, "test_c": 11150, "test_d": 1950, "test_e": 2050}
    dispatch = durations.Dispatch(known, known, jobs=2)
    assert dispatch.is_long("test_c") and not dispatch.is_long("test_first")  # as recorded raw (6950 ms), it was
