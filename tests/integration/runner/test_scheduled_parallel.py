"""parallel(..., interleavings=) with real services under the real supervisor: the counter example
(examples/counter) has a lost update that only a schedule finds; a plain run passes, a PCT schedule
among the first few fails, and the order it realised replays the failure exactly. Scheduling holds
socket sends only, never a nondet() service's, and leaves no fault of its own in the results."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from faultbox.model.decisions import Decisions, Schedule
from faultbox.model.result import Outcome, TestResult
from faultbox.runner.leaf import LeafState
from faultbox.runner.serial import SpecRunner
from faultbox.spec import load_spec
from support import EXAMPLES, free_port

pytestmark = pytest.mark.slow

COUNTER = str(EXAMPLES / "counter" / "counter.star")
TEST = "test_both_likes_count"
LOST = "a like was lost"


@pytest.fixture(scope="module")
def counter() -> Iterator[tuple[SpecRunner, str]]:
    spec = load_spec(COUNTER)
    with SpecRunner(spec, seed=1, timeout=60) as runner:
        discovery = LeafState()
        first = runner.run(TEST, leaf=discovery)
        assert first.outcome is Outcome.PASSED, first.reason
        [site] = discovery.sites
        lines = Path(COUNTER).read_text().splitlines()
        line = next(i for i, text in enumerate(lines, 1) if text.strip() == "parallel(")
        assert site.kind == "order" and site.key == f"counter.star:{line}" and site.size == 12
        yield runner, site.key


def _scheduled(runner: SpecRunner, site: str, schedule: Schedule) -> tuple[TestResult, LeafState]:
    leaf = LeafState(Decisions(orders={site: schedule}))
    return runner.run(TEST, leaf=leaf), leaf


def test_plain_runs_pass_and_a_pct_schedule_finds_the_lost_update_which_its_replay_repeats(
    counter: tuple[SpecRunner, str],
) -> None:
    runner, site = counter
    # No schedule: web is done before mobile reads (bench_pct: a plain run loses a like about once
    # in 85, when web takes longer than mobile's 20 ms check).
    plain = runner.run(TEST)
    assert plain.outcome is Outcome.PASSED, plain.reason
    assert not [e for e in plain.events if e.type == "schedule"]
    failed: tuple[int, TestResult, LeafState] | None = None
    # Two services, one priority change among 6 estimated steps: 12 schedules, and drawing them
    # without replacement tries each once; the lost update needs the change right after the
    # first front end's read.
    for seed in range(12):
        result, leaf = _scheduled(runner, site, Schedule("pct", seed=3, depth=2, index=seed))
        steps = [e for e in result.events if e.type == "schedule"]
        assert steps and {e.service for e in steps} == {"web", "mobile"}, "the store is nondet()"
        realised = leaf.taken.orders[site]
        assert realised.releases == tuple(e.service for e in steps)
        assert result.decisions == f"order.{site}={realised.to_text()}"
        if result.outcome is not Outcome.PASSED:
            failed = (seed, result, leaf)
            break
    assert failed is not None, "no PCT schedule of the 12 lost a like"
    seed, result, leaf = failed
    assert result.outcome is Outcome.FAILED and LOST in result.reason, result.reason
    recorded = leaf.taken.orders[site]
    for _ in range(2):
        again, replayed = _scheduled(runner, site, Schedule.from_text(recorded.to_text()))
        assert again.outcome is Outcome.FAILED and LOST in again.reason, (seed, recorded, again.reason)
        assert replayed.taken.orders[site] == recorded
        assert not [e for e in again.events if e.fields.get("diverged")]


def test_scheduling_holds_socket_sends_only_and_is_not_a_fault(counter: tuple[SpecRunner, str]) -> None:
    runner, site = counter
    result, _ = _scheduled(runner, site, Schedule("permutation", order=(1, 0)))
    assert result.outcome is Outcome.PASSED, result.reason
    held = [e for e in result.events if e.type == "syscall" and e.fields["decision"].startswith("hold(")]
    assert held and all(e.fields["path"].startswith("socket:") for e in held)
    assert {e.fields["syscall"] for e in held} <= {"connect", "sendto", "sendmsg", "write", "writev"}
    assert not any("fault" in e.fields for e in held)
    assert next(e.service for e in result.events if e.type == "schedule") == "mobile", "branch 2 first"
    assert result.faults == [] and not [e for e in result.events if e.type.startswith("fault_")]
    assert not [d for d in result.diagnostics if d.code == "FAULT_NOT_FIRED"]


def _spec(tmp_path: Path, body: str) -> SpecRunner:
    ports = free_port(), free_port()
    services = "".join(
        f'{n} = service("{n}", "python3", interface("public", "http", {p}), args = ["{EXAMPLES}/counter/tally.py"],\n'
        f'    env = {{"TALLY_PORT": "{p}", "STORE_ADDR": "127.0.0.1:1"}}, healthcheck = http("127.0.0.1:{p}/health"))\n'
        for n, p in zip(("web", "mobile"), ports, strict=True)
    )
    path = tmp_path / "spec.star"
    path.write_text(services + body)
    return SpecRunner(load_spec(str(path)), seed=1, timeout=30)


def test_bad_interleavings_fail_at_their_line_with_a_fix(tmp_path: Path) -> None:
    body = """
def test_x():
    parallel(lambda: 1, lambda: 2, interleavings = "dpor")
"""
    with _spec(tmp_path, body) as runner:
        result = runner.run("test_x")
    assert result.outcome is Outcome.FAILED, result.reason
    assert 'interleavings="dpor" is reserved' in result.reason and result.location.endswith("spec.star:7")
    assert result.code == "SPEC_BAD_ARGUMENT"
    assert 'an int N > 1 (N PCT schedules), "all"' in result.details["fix"]


def test_nondet_services_are_not_held_and_nondet_alone_is_true(tmp_path: Path) -> None:
    body = """
def test_x():
    nondet(mobile)
    assert_eq(nondet(), True)
    parallel(lambda: web.get(path = "/health"), lambda: mobile.get(path = "/health"), interleavings = 2)
"""
    with _spec(tmp_path, body) as runner:
        leaf = LeafState(Decisions(orders={"spec.star:9": Schedule("pct", seed=1)}))
        result = runner.run("test_x", leaf=leaf)
    assert result.outcome is Outcome.PASSED, result.reason
    assert {e.service for e in result.events if e.type == "schedule"} == {"web"}
    held = {e.service for e in result.events if e.type == "syscall" and e.fields["decision"].startswith("hold(")}
    assert held == {"web"}
