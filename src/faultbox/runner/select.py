"""Which tests a run runs: --test NAME (exact, with or without the test_ prefix, a matrix group,
~REGEX, or a glob), then --shard K/N (this machine's part of a suite spread over N machines)."""

from __future__ import annotations

import fnmatch
import hashlib
import re

from faultbox.errors import UsageError


class SelectionError(UsageError):
    """A --test pattern that cannot select anything as written."""


def select_tests(names: list[str], pattern: str | None) -> list[str]:
    if not pattern:
        return list(names)
    if pattern.startswith("~"):  # the reference's unanchored regular expression
        try:
            regex = re.compile(pattern[1:])
        except re.error as exc:
            raise SelectionError(f"--test {pattern}: not a regular expression ({exc})") from None
        return [n for n in names if regex.search(n)]
    wanted = [pattern] if pattern.startswith("test_") else [pattern, f"test_{pattern}"]
    exact = [n for n in names if n in wanted]
    if exact:
        return exact
    groups = [n for n in names if any(n.startswith(w + "_") for w in wanted if "matrix_" in w)]
    if groups:
        return groups
    if any(c in pattern for c in "*?["):
        return [n for n in names if any(fnmatch.fnmatchcase(n, w) for w in wanted)]
    return []


class ShardError(UsageError):
    pass


def parse_shard(text: str) -> tuple[int, int]:
    """ "K/N" -> (K, N), 1 <= K <= N."""
    k, sep, n = text.partition("/")
    try:
        index, count = int(k), int(n)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise ShardError(f"--shard {text!r}: write K/N with 1 <= K <= N, e.g. --shard 2/4 for the second of four")
    return index, count


def shard_of(names: list[str], index: int, count: int) -> list[str]:
    """The tests of shard `index` (1-based) of `count`, in the order given.

    Tests are laid out by a hash of their name (the same on every machine and every Python) and cut
    into `count` contiguous runs of equal length (they differ by one at most), so every shard runs
    at most ⌈tests/count⌉ tests. A test's place depends on its name; its shard also depends on how
    many tests sort before it, so adding a test moves at most one test across each boundary."""
    ordered = sorted(names, key=lambda n: (hashlib.sha256(n.encode()).digest(), n))
    total = len(ordered)
    mine = {n for rank, n in enumerate(ordered) if rank * count // total + 1 == index} if total else set()
    return [n for n in names if n in mine]
