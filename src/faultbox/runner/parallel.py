"""parallel(fn1, fn2, ...): branches of one test running at the same time.

Each branch runs in its own thread with its own protocol clients (so two branches really are two
concurrent clients of a service, as two users of the system would be). Results come back in
argument order; the first branch (in argument order) that raised has its error raised again, with
its own spec line. The branches live inside the test's scope: when the test is interrupted (its
deadline, a monitor violation at a step) the branches still running are interrupted too, and none
outlives the call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from faultbox._util.threads import ContextThread, raise_in_thread
from faultbox.errors import TestTimeout

_STOP_WAIT = 3.0  # seconds an interrupted branch gets to unwind before it is left behind
_POLL = 0.05  # the caller's join is interruptible at this pace

_local = threading.local()


def current_branch() -> str:
    """Which branch this thread is: "" on the test's own thread, "2" in the second branch of a
    parallel() call, "2.1" in the first branch of a parallel() inside it. Threads running at the
    same time always differ; a later parallel() reuses the names (and so the clients) of an
    earlier one, which has ended."""
    return getattr(_local, "branch", "")


def run_branches(
    fns: Sequence[Callable[[], Any]], driver: Callable[[Callable[[], bool]], None] | None = None
) -> list[Any]:
    """Run the branches; with a `driver`, call it on this thread while they run, with a function
    that tells whether every branch has returned (a scheduled call's scheduler, runner/schedule.py).
    An error of the driver interrupts the branches as the caller's interruption does."""
    results: list[Any] = [None] * len(fns)
    errors: list[BaseException | None] = [None] * len(fns)

    parent = current_branch()

    def branch(i: int, fn: Callable[[], Any]) -> None:
        _local.branch = f"{parent}.{i + 1}" if parent else str(i + 1)
        try:
            results[i] = fn()
        except BaseException as exc:  # judged by the caller, in argument order
            errors[i] = exc

    # Each branch in a copy of the caller's context: branches run spec code of the caller's test.
    threads = [
        ContextThread(target=branch, args=(i, fn), name=f"faultbox-branch-{i}", daemon=True) for i, fn in enumerate(fns)
    ]
    for t in threads:
        t.start()
    try:
        if driver is not None:
            driver(lambda: not any(t.is_alive() for t in threads))
        for t in threads:
            while t.is_alive():
                t.join(_POLL)
    finally:
        running = [t for t in threads if t.is_alive()]
        for t in running:  # the caller was interrupted: so are its branches
            if t.ident is not None:
                raise_in_thread(t.ident, TestTimeout)
        for t in running:
            t.join(_STOP_WAIT)
    for exc in errors:
        if exc is not None:
            raise exc
    return results
