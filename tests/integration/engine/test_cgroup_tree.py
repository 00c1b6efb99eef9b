"""Each RunContext of a process has a cgroup tree of its own (the pytest plugin keeps one per spec
file): a second tree must not share, or silently lack, the first one's base."""

from __future__ import annotations

import pytest

from faultbox.engine.cgroup import CgroupTree


def test_two_trees_in_one_process_have_bases_of_their_own() -> None:
    announced: list[str] = []
    first = CgroupTree(announce=announced.append)
    second = CgroupTree(announce=announced.append)
    try:
        if not first.available:
            pytest.skip("no writable cgroup v2 here")
        assert second.available and first.base != second.base
        assert announced == [str(first.base), str(second.base)]
    finally:
        second.close()
        first.close()
