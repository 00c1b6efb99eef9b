"""The shipped example suite passes against the example system."""

from __future__ import annotations

from faultbox.runner.run import RunOptions, run_spec
from faultbox.spec import load_spec
from support import EXAMPLES


def test_orders_example_passes() -> None:
    spec = load_spec(str(EXAMPLES / "orders" / "orders.star"))
    result = run_spec(spec, RunOptions(seed=7))
    failed = [f"{t.name}: {t.reason}" for t in result.tests if t.verdict.value != "pass"]
    assert failed == []
    assert len(result.tests) == 15
    # The fault tests really faulted: their denials and delays are in the traces.
    decisions = {
        e.fields["decision"]
        for t in result.tests
        for e in t.events
        if e.type == "syscall" and e.fields["decision"] != "allow"
    }
    assert {"deny(EIO)", "deny(ENOSPC)", "deny(ECONNREFUSED)", "delay(300ms)", "delay(50ms)"} <= decisions
    assert result.matrix is not None and len([c for c in result.matrix.cells if c.outcome]) == 6
