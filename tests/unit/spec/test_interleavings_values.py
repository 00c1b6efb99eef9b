"""parallel(..., interleavings=): the schedules a value names, the refusals, and the filters a spec
that explores gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from faultbox.model.decisions import Schedule
from faultbox.model.syscalls import SCHEDULED_SYSCALLS
from faultbox.spec import load_spec
from faultbox.spec.args import ArgError
from faultbox.spec.interleavings import critical_orders, schedules


def test_one_is_a_plain_call() -> None:
    assert schedules(1, 2, 5, "s.star:3") == [] == schedules("1", 2, 5, "s.star:3")


def test_n_is_n_pct_draws_of_one_seed_from_the_run_and_the_site() -> None:
    got = schedules(4, 2, 5, "s.star:3")
    assert [s.mode for s in got] == ["pct"] * 4 and {s.depth for s in got} == {2}
    assert len({s.seed for s in got}) == 1 and [s.index for s in got] == [0, 1, 2, 3]
    assert got == schedules("4", 2, 5, "s.star:3"), "the same run, the same schedules"
    assert got != schedules(4, 2, 6, "s.star:3") and got != schedules(4, 2, 5, "s.star:4")


def test_all_is_every_order_of_the_branches() -> None:
    got = schedules("all", 3, 1, "s:1")
    assert len(got) == 6 and len({s.order for s in got}) == 6
    assert got[0] == Schedule("permutation", order=(0, 1, 2))


@pytest.mark.parametrize(("n", "size"), [(2, 2), (3, 5), (4, 7), (5, 9)])
def test_critical_is_2n_minus_1_orders_at_most_n_factorial(n: int, size: int) -> None:
    orders = critical_orders(n)
    assert len(orders) == len(set(orders)) == size
    assert orders[0] == tuple(range(n)) and tuple(reversed(range(n))) in orders
    assert [s.order for s in schedules("critical", n, 1, "s:1")] == orders


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("dpor", 'interleavings="dpor" is reserved'),
        ("sut-internal", 'interleavings="sut-internal" is reserved'),
        ("some", 'interleavings="some" is not a mode'),
        (0, "interleavings=0 must be at least 1"),
        (True, "interleavings=True is not a count or a mode"),
        (2.5, "interleavings=2.5 is not a count or a mode"),
    ],
)
def test_other_values_are_refused_with_a_fix(value: object, message: str) -> None:
    with pytest.raises(ArgError) as caught:
        schedules(value, 2, 1, "s:1")
    assert message in str(caught.value)
    assert 'an int N > 1 (N PCT schedules), "all"' in (caught.value.hint or "")


def test_all_of_many_branches_is_refused() -> None:
    with pytest.raises(ArgError, match="of 7 branches is 5040 runs") as caught:
        schedules("all", 7, 1, "s:1")
    assert 'use "critical"' in (caught.value.hint or "")


def _spec(tmp_path: Path, body: str) -> dict[str, frozenset[str]]:
    path = tmp_path / "spec.star"
    path.write_text(
        'a = service("a", "/bin/sleep", interface("main", "tcp", 19301), args = ["60"])\n'
        'b = service("b", "/bin/sleep", interface("main", "tcp", 19302), args = ["60"])\n'
        "def test_x():\n" + body
    )
    return load_spec(str(path)).syscalls


def test_a_spec_that_explores_intercepts_the_scheduled_sends_of_every_service(tmp_path: Path) -> None:
    filters = _spec(tmp_path, "    parallel(lambda: None, lambda: None, interleavings = 3)\n")
    for name in ("a", "b"):
        assert set(SCHEDULED_SYSCALLS) <= filters[name]


def test_a_plain_parallel_adds_nothing_to_the_filters(tmp_path: Path) -> None:
    filters = _spec(tmp_path, '    parallel(lambda: None, lambda: None, interleavings = "1")\n')
    assert filters == {"a": frozenset(), "b": frozenset()}
