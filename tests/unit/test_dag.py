"""run_in_order: each task starts once its dependencies have finished, independent ones run at
the same time, and the first error stops what has not started and is raised after the rest."""

from __future__ import annotations

import threading

import pytest

from faultbox._util.dag import run_in_order


def test_independent_tasks_overlap_and_dependents_wait() -> None:
    both_running = threading.Barrier(2, timeout=30)
    log: list[str] = []
    lock = threading.Lock()

    def run(name: str) -> None:
        if name in ("db", "cache"):
            both_running.wait()  # deadlocks (BrokenBarrierError after 30 s) unless they overlap
        with lock:
            log.append(name)

    deps = {"api": ["db", "cache"], "worker": ["api"]}
    run_in_order(["db", "cache", "api", "worker"], deps, run, threading.Event())
    assert set(log[:2]) == {"db", "cache"} and log[2:] == ["api", "worker"]


def test_a_failure_stops_dependents_and_waits_for_tasks_in_flight() -> None:
    stop = threading.Event()
    slow_saw_stop: list[bool] = []

    def run(name: str) -> None:
        if name == "bad":
            raise ValueError("bad did not start")
        if name == "slow":
            slow_saw_stop.append(stop.wait(30))
        if name == "after":
            raise AssertionError("a dependent of a failed task started")

    with pytest.raises(ValueError, match="bad did not start"):
        run_in_order(["slow", "bad", "after"], {"after": ["bad"]}, run, stop)
    assert slow_saw_stop == [True]  # it was told to give up, and the call waited for it


def test_deps_outside_the_names_count_as_done() -> None:
    ran: list[str] = []
    run_in_order(["b"], {"b": ["a"]}, ran.append, threading.Event())
    assert ran == ["b"]
