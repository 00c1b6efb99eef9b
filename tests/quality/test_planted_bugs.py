"""Invariants catch real bugs: for each of the seed page's patterns, a bug planted in the orders
example makes its invariant fail in the matrix cells whose fault exposes it, and only there; without
a bug every cell passes."""

from __future__ import annotations

import pytest

from faultbox.model.result import Outcome
from faultbox.runner.run import RunOptions, run_spec
from faultbox.spec import load_spec
from support import EXAMPLES

PATTERNS = str(EXAMPLES / "orders" / "patterns.star")

# bug -> {(scenario, fault): (outcome, words the reason must contain)}
EXPECTED: dict[str, dict[tuple[str, str], tuple[Outcome, str]]] = {
    "": {},
    "racy-reserve": {
        ("create_order", "slow_disk"): (
            Outcome.FAILED,
            'monitor "stock_never_negative_check" violated: stock went negative',
        ),
    },
    "ack-unpersisted": {
        ("create_order", "disk_error"): (Outcome.FAILED, 'monitor "order_confirmed_means_persisted" violated'),
    },
    "ack-before-fsync": {
        ("create_order", "slow_disk"): (Outcome.EXPECTATION_VIOLATED, "assert_before"),
    },
    "double-confirm": {
        ("create_order", "slow_disk"): (Outcome.FAILED, 'monitor "each_order_confirmed_once" violated'),
    },
}


@pytest.mark.parametrize("bug", list(EXPECTED))
def test_invariant_fires_exactly_where_the_fault_exposes_the_bug(bug: str) -> None:
    result = run_spec(load_spec(PATTERNS, {"bug": bug}), RunOptions(seed=3))
    assert result.matrix is not None
    cells = {(c.scenario, c.assumption): c for c in result.matrix.cells}
    assert len(cells) == 6
    for key, cell in cells.items():
        expected = EXPECTED[bug].get(key)
        if expected is None:
            assert cell.outcome is Outcome.PASSED, f"{key} should pass with bug={bug!r}: {cell.reason}"
        else:
            outcome, words = expected
            assert cell.outcome is outcome, f"{key} with bug={bug!r}: {cell.outcome} {cell.reason}"
            assert words in cell.reason
    for test in result.tests:
        if test.violation is not None:
            # the violating event is the service's own log line, shown with what came before it
            assert test.violation.event["type"] == "stdout" and test.violation.before
