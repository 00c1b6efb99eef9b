"""The scheduler's decisions (runner/schedule.py) without processes: PCT's priorities and change
points, the fixed orders of permutations, replay, and the driver loop over a trace fed by a fake
supervisor that parks each service's next send when one is released."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from faultbox.model.decisions import Schedule
from faultbox.model.event import Event
from faultbox.runner.schedule import (
    PctPolicy,
    PermutationPolicy,
    ReplayPolicy,
    Scheduler,
    make_policy,
    tag_of,
)
from faultbox.trace.log import TraceLog

SERVICES = ["a", "b", "c"]


def test_pct_priorities_are_distinct_and_drawn_from_the_seed() -> None:
    one, again = PctPolicy(SERVICES, seed=7, depth=3), PctPolicy(SERVICES, seed=7, depth=3)
    assert one.priority == again.priority and one.drops == again.drops
    assert sorted(one.priority.values()) == [3, 4, 5]  # d .. d+n-1, above every change point's
    assert sorted(one.drops.values()) == [1, 2]  # depth - 1 change points, to d-1 .. 1
    assert all(1 <= step <= one.steps for step in one.drops)
    orders = {tuple(sorted(SERVICES, key=lambda s: -PctPolicy(SERVICES, seed=i).priority[s])) for i in range(60)}
    assert len(orders) == 6, "every priority order of three services is drawn"


def test_pct_runs_the_highest_priority_enabled_service_until_a_change_point() -> None:
    pct = PctPolicy(["a", "b"], seed=0, depth=2, steps=4)
    pct.priority = {"a": 3, "b": 2}
    pct.drops = {2: 1}
    assert pct.pick(["a", "b"]) == "a"
    pct.released("a")
    assert pct.pick(["b"]) == "b", "only enabled services are picked"
    assert pct.pick(["a", "b"]) == "a"
    pct.released("a")  # step 2 is the change point: a drops below b
    assert pct.priority["a"] == 1
    assert pct.pick(["a", "b"]) == "b"


def test_pct_depth_one_never_changes_priorities() -> None:
    pct = PctPolicy(SERVICES, seed=3, depth=1)
    assert pct.drops == {}
    first = pct.pick(SERVICES)
    for _ in range(20):
        pct.released(first or "")
    assert pct.pick(SERVICES) == first


def test_pct_change_points_are_uniform_over_the_estimated_steps() -> None:
    counts = Counter(step for seed in range(3000) for step in PctPolicy(["a", "b"], seed, 2, steps=6).drops)
    assert set(counts) == set(range(1, 7))
    assert max(counts.values()) - min(counts.values()) < 150


def test_a_permutation_ranks_the_branches_services_in_its_order() -> None:
    targets = {0: "b", 1: "c"}
    perm = PermutationPolicy(SERVICES, order=(1, 0), targets=targets)
    assert perm.ranking() == ["c", "b", "a"]  # a no branch targets comes last
    assert perm.pick(["a", "b"]) == "b"
    assert perm.pick([]) is None
    assert PermutationPolicy(SERVICES, order=(1, 0), targets={}).ranking() == SERVICES


def test_replay_waits_for_the_service_whose_turn_it_is() -> None:
    replay = ReplayPolicy(["b", "a"], PermutationPolicy(["a", "b"], (0, 1), {}))
    assert replay.pick(["a"]) is None, "a's turn has not come"
    assert replay.pick(["a", "b"]) == "b"
    replay.released("b")
    assert replay.pick(["a", "b"]) == "a"
    replay.released("a")
    assert replay.pick(["b"]) == "b" and replay.due is None  # past the record: the branches' order
    replay = ReplayPolicy(["b"], PermutationPolicy(["a", "b"], (0, 1), {}))
    replay.diverge()
    assert replay.pick(["a", "b"]) == "a"


def test_make_policy_follows_the_schedules_mode() -> None:
    assert isinstance(make_policy(Schedule("pct", seed=1, depth=2), SERVICES, {}), PctPolicy)
    assert isinstance(make_policy(Schedule("permutation", order=(1, 0)), SERVICES, {}), PermutationPolicy)
    assert isinstance(make_policy(Schedule("replay", releases=("a",)), SERVICES, {}), ReplayPolicy)


class FakeSystem:
    """Services that each send `sends` times, one at a time: a released send parks the next one
    (a hold event in the trace), as a service waiting on each answer would."""

    def __init__(self, log: TraceLog, sends: dict[str, int]) -> None:
        self.log = log
        self.sends = dict(sends)
        self.left = dict(sends)
        self.released: list[str] = []
        for service in sends:
            self.park(service)

    def park(self, service: str) -> None:
        if self.left[service] > 0:
            self.left[service] -= 1
            self.log.append(Event("syscall", service, {"syscall": "sendto", "decision": f"hold({tag_of(service)})"}))

    def release(self, tag: str, err: int, count: int) -> int:
        service = tag.removeprefix("fb.schedule.")
        self.released.append(service)
        self.park(service)
        return 1

    def done(self) -> bool:
        return len(self.released) == sum(self.sends.values())


def emitter(log: TraceLog) -> Callable[[str, str, dict[str, str]], object]:
    return lambda type, service, fields: log.append(Event(type, service, dict(fields)))


def _drive(
    schedule: Schedule, sends: dict[str, int], branches: tuple[str, ...] = (), patience: float = 1.0
) -> tuple[list[str], TraceLog]:
    log = TraceLog()
    system = FakeSystem(log, sends)
    sched = Scheduler(
        log, system, list(sends), schedule, "spec.star:9", emitter(log), lambda: None, quiet=0.01, patience=patience
    )
    for i, svc in enumerate(branches, 1):
        sched.saw_step(str(i), svc)
    sched.run(system.done)
    assert sched.realised() == Schedule("replay", releases=tuple(system.released))
    return system.released, log


def test_the_driver_releases_in_the_permutations_order() -> None:
    released, log = _drive(Schedule("permutation", order=(1, 0)), {"a": 2, "b": 3}, branches=("a", "b"))
    assert released == ["b", "b", "b", "a", "a"]
    steps = [(e.service, e.fields["step"]) for e in log.events if e.type == "schedule"]
    assert steps == [("b", "1"), ("b", "2"), ("b", "3"), ("a", "4"), ("a", "5")]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_pct_run_replays_exactly(seed: int) -> None:
    sends = {"a": 3, "b": 3}
    released, _ = _drive(Schedule("pct", seed=seed, depth=2), sends)
    assert sorted(released) == ["a"] * 3 + ["b"] * 3
    again, _ = _drive(Schedule("replay", releases=tuple(released)), sends)
    assert again == released


def test_a_replay_that_diverges_says_so_and_finishes() -> None:
    released, log = _drive(Schedule("replay", releases=("c",)), {"a": 1, "b": 1}, patience=0.05)
    assert released == ["a", "b"]
    assert any(e.fields.get("diverged") == "true" for e in log.events if e.type == "schedule")


def test_draws_without_replacement_cover_every_schedule_of_one_change() -> None:
    """Two services, 6 estimated steps, one change point: 2 orders x 6 points = 12 schedules; the
    leaves 0..11 of one seed are exactly those twelve, and leaf 12 starts over."""
    from faultbox.runner.schedule import PctPolicy

    def shape(index: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        p = PctPolicy(["a", "b"], seed=99, depth=2, index=index)
        return (tuple(p.priority[s] for s in ("a", "b")), tuple(sorted(p.drops)))

    drawn = [shape(i) for i in range(12)]
    assert len(set(drawn)) == 12
    assert {points for _, points in drawn} == {(c,) for c in range(1, 7)}
    assert shape(12) == drawn[0]
    assert [shape(i) for i in range(12)] == drawn, "a draw is a function of the seed and the index"
    other = [tuple(sorted(PctPolicy(["a", "b"], seed=7, depth=2, index=i).drops)) for i in range(12)]
    assert other != [points for _, points in drawn], "another seed, another order"
