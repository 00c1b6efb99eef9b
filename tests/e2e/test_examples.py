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


def test_seed_page_examples_run_as_written() -> None:
    """The page's blocks, verbatim, on the orders example (its inventory plays "db", with a *.wal
    file written by write()): they pass, and Pattern 3 compared a real WAL write with the reply."""
    result = run_spec(load_spec(str(EXAMPLES / "orders" / "seed_page.star")), RunOptions(seed=3))
    assert [f"{t.name}: {t.reason}" for t in result.tests if t.verdict.value != "pass"] == []
    [wal] = [t for t in result.tests if t.name == "test_wal_before_response"]
    writes = [e for e in wal.events if e.type == "syscall" and e.service == "db" and e.fields["syscall"] == "write"
              and e.fields.get("path", "").endswith(".wal")]  # fmt: skip
    reply = next(e for e in wal.events if e.type == "step_recv" and e.service == "api")
    assert writes and writes[0].seq < reply.seq
    down = next(t for t in result.tests if t.name == "test_order_db_down")
    assert any(e.fields.get("decision") == "deny(ECONNREFUSED)" for e in down.events if e.type == "syscall")
