"""parallel(..., interleavings=): which schedules a call's leaves run.

    1, "1"        one plain run: the branches run concurrently, unscheduled (no leaves)
    N > 1         N PCT schedules, seeds derived from the run seed, the call's site and the index
    "all"         every priority order of the branches: n! schedules
    "critical"    the identity order and its rotations, then the reverse and its rotations, without
                  repeats: min(2n - 1, n!) schedules

The runner (runner/schedule.py) is what makes a schedule happen; this only names them.
"""

from __future__ import annotations

import itertools
from typing import Any

from faultbox._util.seeds import rule_seed
from faultbox.model.decisions import Schedule
from faultbox.spec.args import ArgError
from faultbox.spec.values import starlark_repr

PCT_DEPTH = 2  # one priority change point: every ordering bug of depth 2 has a chance >= 1/(n*k)
MAX_ALL_BRANCHES = 6  # "all" of 7 branches would be 5040 leaves
MAX_SCHEDULES = 1000

_FIX = (
    'write interleavings=1 (one concurrent run), an int N > 1 (N PCT schedules), "all" (every order '
    'of the branches) or "critical" (2n-1 orders)'
)


def schedules(interleavings: Any, branches: int, run_seed: int, site: str) -> list[Schedule]:
    """The options of a parallel() site; [] for a plain call."""
    value = interleavings
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ArgError(f"parallel(): interleavings={starlark_repr(interleavings)} is not a count or a mode", _FIX)
    if isinstance(value, int):
        if value < 1:
            raise ArgError(f"parallel(): interleavings={value} must be at least 1", _FIX)
        if value > MAX_SCHEDULES:
            raise ArgError(
                f"parallel(): interleavings={value} is more than {MAX_SCHEDULES} schedules",
                "a few dozen PCT schedules find most ordering bugs; vary --seed for more",
            )
        if value == 1:
            return []
        # One seed for the site, each leaf its own draw of it without replacement: N leaves are N
        # different schedules (independent draws repeat the likely ones).
        seed = pct_seed(run_seed, site, 0)
        return [Schedule("pct", seed=seed, depth=PCT_DEPTH, index=i) for i in range(value)]
    if value in ("dpor", "sut-internal"):
        raise ArgError(
            f'parallel(): interleavings="{value}" is reserved (the reference reserves it too) and not implemented',
            _FIX,
        )
    if value == "all":
        if branches > MAX_ALL_BRANCHES:
            raise ArgError(
                f'parallel(): interleavings="all" of {branches} branches is {_factorial(branches)} runs',
                f'use "critical" ({2 * branches - 1} orders) or a number of PCT schedules, e.g. interleavings=50',
            )
        return [Schedule("permutation", order=p) for p in itertools.permutations(range(branches))]
    if value == "critical":
        return [Schedule("permutation", order=p) for p in critical_orders(branches)]
    raise ArgError(f"parallel(): interleavings={starlark_repr(interleavings)} is not a mode", _FIX)


def pct_seed(run_seed: int, site: str, index: int) -> int:
    return rule_seed(run_seed, f"pct|{site}|{index}") & ((1 << 63) - 1)


def critical_orders(n: int) -> list[tuple[int, ...]]:
    """The identity and its rotations, then the reverse and its rotations, first-seen order,
    without repeats, at most 2n - 1 (n! when fewer: 2 orders of 2 branches)."""
    identity = tuple(range(n))
    out: list[tuple[int, ...]] = []
    for base in (identity, identity[::-1]):
        for r in range(n):
            order = base[r:] + base[:r]
            if order not in out:
                out.append(order)
    return out[: 2 * n - 1]


def _factorial(n: int) -> int:
    out = 1
    for i in range(2, n + 1):
        out *= i
    return out
