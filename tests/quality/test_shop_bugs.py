"""The shop example (examples/shop) catches its planted bugs: for each bug, the invariant that guards
against it fails in exactly the tests whose fault exposes the bug (matrix cells and fault
scenarios), with a message a person can act on, and every other test of the run passes. Without a
bug, every test of the spec passes.

Each bug runs a selection of the spec's tests: the ones that must fail, plus neighbours that must
not (the same fault with another scenario, or the same scenario under another fault). The run
without a bug runs them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from faultbox.model.result import Outcome, RunResult, TestResult
from faultbox.runner.run import RunOptions, run_spec
from faultbox.spec import load_spec
from support import EXAMPLES

SHOP = EXAMPLES / "shop"
SPEC = str(SHOP / "shop.star")

pytestmark = pytest.mark.slow

MONITOR = Outcome.FAILED  # a monitor violation fails the test
EXPECT = Outcome.EXPECTATION_VIOLATED


@dataclass(frozen=True)
class Caught:
    outcome: Outcome
    reason: tuple[str, ...]  # pieces of text the test's reason must contain
    monitor: str | None = None  # the monitor that fired, when outcome is MONITOR
    event_type: str | None = None  # the type of the event it fired on


def persistence() -> Caught:
    return Caught(
        MONITOR,
        ('monitor "order_confirmed_means_persisted" violated: order confirmed but not persisted!',),
        "order_confirmed_means_persisted",
        "stdout",
    )


def orphan() -> Caught:
    return Caught(
        MONITOR,
        ('monitor "no_orphan_events" violated: orphan event: order ord-', " not in DB"),
        "no_orphan_events",
        "topic",
    )


@dataclass(frozen=True)
class Bug:
    caught: dict[str, Caught]  # test -> how the bug shows in it
    controls: tuple[str, ...]  # tests of the same run that must pass


BUGS: dict[str, Bug] = {
    # Confirmed before COMMIT: fires wherever a database write fails, not where the connection
    # fails first (db_down) nor where the write is only slow (db_slow).
    "confirm-before-commit": Bug(
        caught={
            "test_matrix_create_order_disk_full": persistence(),
            "test_matrix_bulk_import_disk_full": persistence(),
            "test_no_rows_after_failed_write": persistence(),
            "test_no_orphaned_orders": persistence(),
            "test_no_orphan_events": persistence(),
            "test_order_db_write_fail": persistence(),
            "test_no_stale_cache_db_write_error": persistence(),
        },
        controls=(
            "test_matrix_create_order_db_down",
            "test_matrix_create_order_db_slow",
            "test_matrix_health_check_disk_full",
            "test_create_order",
        ),
    ),
    # No guard, no idempotency: the message redelivered after the slow consumer's rejoin is applied
    # a second time (gadget 5 -> 2 -> -1).
    "negative-stock": Bug(
        caught={
            "test_no_message_loss": Caught(
                MONITOR,
                ('monitor "no_negative_stock" violated: stock went negative: -1',),
                "no_negative_stock",
                "stdout",
            ),
        },
        controls=("test_publish_and_consume", "test_bulk_import"),
    ),
    # A late delivery report makes the api publish again: a slow broker, or a produce answered
    # NOT_LEADER_OR_FOLLOWER late (the producer's own retry then stores the first one too).
    "duplicate-event": Bug(
        caught={
            "test_no_duplicate_events": Caught(
                MONITOR,
                ('monitor "max_one_publish_per_order" violated: duplicate event: order ord-1-', "published 2 times"),
                "max_one_publish_per_order",
                "topic",
            ),
            "test_not_leader_is_no_duplicate": Caught(
                MONITOR,
                ('monitor "max_one_publish_per_order" violated: duplicate event: order ord-1-', "published 2 times"),
                "max_one_publish_per_order",
                "topic",
            ),
        },
        controls=("test_create_order", "test_bulk_import"),
    ),
    # A serialization failure is answered 503 instead of retried: only a protocol fault (a real
    # SQLSTATE 40001 from the database) reaches that code path.
    "no-retry": Bug(
        caught={
            "test_serialization_failure_is_retried": Caught(
                EXPECT, ("503 != 201", "a transient serialization failure must not fail the order")
            ),
        },
        controls=("test_create_order", "test_no_orphaned_orders", "test_redis_readonly_fails_cleanly"),
    ),
    # A cache miss is answered 404: only an injected miss (Redis answering nil) shows it, since the
    # api caches every order it stores.
    "cache-miss-404": Bug(
        caught={
            "test_cache_miss_reads_through": Caught(EXPECT, ("404 != 200", "an order evicted from the cache")),
        },
        controls=("test_order_is_stored_cached_and_reserved", "test_no_stale_cache"),
    ),
    # Charges without an Idempotency-Key: a retry after a timeout is a second charge. Only a charge
    # answered late (payments_slow) makes the api ask twice; a 503 is not a charge, so a blip is safe.
    "charge-without-key": Bug(
        caught={
            "test_payment_timeout_charges_once": Caught(
                MONITOR,
                ('monitor "charged_at_most_once" violated: order ord-', " was charged 2 times"),
                "charged_at_most_once",
                "mock",
            ),
        },
        controls=("test_payment_blip_is_retried", "test_payment_down_fails_cleanly", "test_create_order"),
    ),
    # The event goes out before the row: an orphan event wherever the write fails. Where the fault
    # carries orphan_check, the monitor catches it; the page's no_orphan_events scenario (whose
    # db_write_error does not carry it) catches it with assert_never.
    "event-before-commit": Bug(
        caught={
            "test_matrix_create_order_disk_full": orphan(),
            "test_matrix_bulk_import_disk_full": orphan(),
            "test_no_rows_after_failed_write": orphan(),
            "test_order_db_write_fail": orphan(),
            "test_no_orphan_events": Caught(
                EXPECT, ("assert_never: ", "event(s) matched where=<function>; first: #", "topic bus action=produce")
            ),
        },
        controls=("test_no_orphaned_orders", "test_matrix_create_order_db_down", "test_create_order"),
    ),
    # The pending order stays cached after a failed COMMIT (a failed connection still cleans up).
    "stale-cache": Bug(
        caught={
            "test_no_stale_cache_db_write_error": Caught(
                EXPECT, ("stale cache: order:ord-1-", "is still cached after the order failed", "no such order")
            ),
        },
        controls=(
            "test_no_stale_cache_db_down",
            "test_no_stale_cache",
            "test_matrix_create_order_disk_full",
            "test_create_order",
        ),
    ),
    # The worker gives up on a slow message and stops consuming.
    "message-lost": Bug(
        caught={
            "test_no_message_loss": Caught(
                EXPECT, ("assert_eq failed: 1 != 0 (every produced message must be consumed)",)
            ),
        },
        controls=("test_publish_and_consume", "test_create_order"),
    ),
}


def run_shop(bug: str, tests: set[str] | None = None) -> RunResult:
    if not (SHOP / ".venv" / "bin" / "python").exists():
        pytest.fail(
            "examples/shop/.venv is missing: run ./scripts/setup (or python3 -m venv examples/shop/.venv && "
            "examples/shop/.venv/bin/pip install -r examples/shop/requirements.txt)"
        )
    spec = load_spec(SPEC, {"bug": bug})
    if tests is not None:
        missing = tests - {t.name for t in spec.tests}
        assert not missing, f"the spec has no tests named {sorted(missing)}"
        spec.tests = [t for t in spec.tests if t.name in tests]
    return run_spec(spec, RunOptions(seed=11))


def summary(result: RunResult) -> str:
    return "\n".join(f"  {t.name}: {t.outcome.value} {t.reason}" for t in result.tests)


def check_caught(test: TestResult, caught: Caught, bug: str) -> None:
    where = f"{test.name} with bug={bug}"
    assert test.outcome is caught.outcome, f"{where}: {test.outcome.value} {test.reason}"
    for words in caught.reason:
        assert words in test.reason, f"{where}: {test.reason!r} lacks {words!r}"
    if caught.outcome is MONITOR:
        violation = test.violation
        assert violation is not None, where
        assert violation.monitor == caught.monitor, f"{where}: {violation.monitor}"
        # the violating event is shown, with what came before it
        assert violation.event["type"] == caught.event_type, f"{where}: {violation.event}"
        assert violation.before, where
        assert "invariants.star:" in violation.location, f"{where}: points at {violation.location}"
    else:
        assert test.violation is None, f"{where}: {test.violation}"


def test_without_a_bug_every_test_passes() -> None:
    result = run_shop("")
    assert len(result.tests) == 33, summary(result)
    failed = [t for t in result.tests if t.outcome is not Outcome.PASSED]
    assert not failed, "without a bug every test passes:\n" + summary(result)
    assert result.matrix is not None
    assert {(c.scenario, c.assumption) for c in result.matrix.cells} == {
        (s, f) for s in ("create_order", "bulk_import", "health_check") for f in ("db_down", "db_slow", "disk_full")
    }
    assert all(c.outcome is Outcome.PASSED for c in result.matrix.cells)


@pytest.mark.parametrize("bug", list(BUGS))
def test_the_invariant_catches_the_bug_where_its_fault_exposes_it(bug: str) -> None:
    expected = BUGS[bug]
    result = run_shop(bug, set(expected.caught) | set(expected.controls))
    by_name = {t.name: t for t in result.tests}
    assert set(by_name) == set(expected.caught) | set(expected.controls), summary(result)
    for name, caught in expected.caught.items():
        check_caught(by_name[name], caught, bug)
    for name in expected.controls:
        test = by_name[name]
        assert test.outcome is Outcome.PASSED, f"{name} must pass with bug={bug}: {test.outcome.value} {test.reason}"
    if result.matrix is not None:  # matrix cells agree with their tests
        for cell in result.matrix.cells:
            if cell.outcome is not None:
                assert cell.outcome is by_name[cell.test].outcome
