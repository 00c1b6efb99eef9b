"""--shard K/N: every test in exactly one shard, shards of equal size, and little movement when a
test is added."""

from __future__ import annotations

import pytest

from faultbox.runner.select import ShardError, parse_shard, shard_of

NAMES = [f"test_{i}" for i in range(33)] + [f"test_matrix_s{i}_f{j}" for i in range(4) for j in range(5)]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 53, 60])
def test_shards_partition_the_suite_in_equal_parts(count: int) -> None:
    parts = [shard_of(NAMES, k, count) for k in range(1, count + 1)]
    assert sorted(n for p in parts for n in p) == sorted(NAMES)
    ceiling = -(-len(NAMES) // count)
    assert all(len(p) <= ceiling for p in parts), [len(p) for p in parts]
    assert all(len(p) >= len(NAMES) // count for p in parts)
    for p in parts:  # the suite's order inside a shard
        assert p == [n for n in NAMES if n in p]


def test_a_shard_depends_on_the_names_not_on_their_order() -> None:
    assert set(shard_of(NAMES, 2, 3)) == set(shard_of(list(reversed(NAMES)), 2, 3))


def test_adding_a_test_moves_at_most_one_test_per_boundary() -> None:
    count = 4
    before = {n: k for k in range(1, count + 1) for n in shard_of(NAMES, k, count)}
    grown = [*NAMES, "test_new_one"]
    after = {n: k for k in range(1, count + 1) for n in shard_of(grown, k, count)}
    moved = [n for n in NAMES if before[n] != after[n]]
    assert len(moved) <= count - 1, moved


def test_parse_shard() -> None:
    assert parse_shard("2/4") == (2, 4)
    assert parse_shard("1/1") == (1, 1)
    for bad in ("0/3", "4/3", "3", "a/b", "1/0", "-1/2", ""):
        with pytest.raises(ShardError, match="K/N"):
            parse_shard(bad)
