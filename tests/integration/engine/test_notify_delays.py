"""The C loop's delay timers (engine/_notify.c), driven without seccomp.

A pipe stands in for a listener: answering it fails (it is no seccomp fd), and the loop counts every
failed answer in stats()["send_failed"], which is how these tests see whether a delay was answered.
No timing thresholds: only orders, counts and lower bounds.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the C loop is Linux-only")

from faultbox.engine import _notify  # noqa: E402

_GUARD_S = 60.0  # only against a hang: a broken loop fails the test instead of blocking the suite


@pytest.fixture
def loop() -> Iterator[_notify.Loop]:
    ctl, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        yield _notify.Loop(ctl.fileno(), bytes(1024))
    finally:
        ctl.close()
        other.close()


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        os.close(r)
        os.close(w)


def _fired(loop: _notify.Loop, count: int) -> list[tuple[int, float, float]]:
    """Wait in the loop until `count` delays have fired; their records, in firing order."""
    got: list[tuple[int, float, float]] = []
    give_up = time.monotonic() + _GUARD_S
    while len(got) < count:
        assert time.monotonic() < give_up, f"only {len(got)} of {count} delays fired"
        slow, control, closed = loop.wait(1.0, 0.0, 1)  # return as soon as one record is buffered
        assert (slow, control, closed) == ([], False, [])
        got += loop.take_fired()
    return got


def test_delays_fire_by_deadline_and_ties_in_the_order_they_were_added(
    loop: _notify.Loop, pipe: tuple[int, int]
) -> None:
    fd = pipe[0]
    now = time.monotonic()
    dues = {1: now + 0.020, 2: now + 0.005, 3: now + 0.010, 4: now + 0.010, 5: now - 1.0}
    for token, due in dues.items():
        loop.delay(fd, 100 + token, due, token)
    assert loop.stats()["delays"] == 5
    fired = _fired(loop, 5)
    assert [token for token, _, _ in fired] == [5, 2, 3, 4, 1]
    assert all(lateness >= 0 for _, _, lateness in fired)  # never before its deadline
    assert [ts for _, ts, _ in fired] == sorted(ts for _, ts, _ in fired)  # wall time of each answer
    stats = loop.stats()
    assert (stats["delays"], stats["buffered"], stats["send_failed"]) == (0, 0, 5)  # each one answered once
    assert loop.take_fired() == []


def test_a_removed_listeners_delays_still_fire_but_are_never_answered(
    loop: _notify.Loop, pipe: tuple[int, int]
) -> None:
    r, w = pipe
    loop.add(r, 1)
    now = time.monotonic()
    loop.delay(r, 1, now + 0.002, 1)
    loop.delay(w, 2, now + 0.004, 2)  # another "listener", still there
    loop.remove(r)  # its fd number may be reused by the time the delay is due
    fired = _fired(loop, 2)
    assert [token for token, _, _ in fired] == [1, 2]
    assert loop.stats()["send_failed"] == 1  # only the live one was answered


def test_release_answers_every_pending_delay_at_once(loop: _notify.Loop, pipe: tuple[int, int]) -> None:
    r, w = pipe
    loop.add(r, 1)
    far = time.monotonic() + 3600.0
    loop.delay(r, 1, far + 2, 1)
    loop.delay(w, 2, far + 1, 2)
    loop.delay(r, 3, far, 3)
    loop.remove(r)
    loop.delay(w, 4, far + 3, 4)
    assert loop.release_delays() == [3, 2, 1, 4]  # deadline order
    stats = loop.stats()
    assert (stats["delays"], stats["send_failed"]) == (0, 2)  # the removed listener's two were not answered
    assert loop.take_fired() == []  # released, not fired: no lateness to report
    assert loop.release_delays() == []


def test_cutting_a_listeners_delays_answers_them_now_and_leaves_the_others(
    loop: _notify.Loop, pipe: tuple[int, int]
) -> None:
    r, w = pipe
    far = time.monotonic() + 3600.0
    for token, fd, due in ((1, r, 2), (2, w, 5), (3, r, 0), (4, w, 1), (5, w, 4), (6, w, 3), (7, r, 6)):
        loop.delay(fd, token, far + due, token)
    assert loop.cut_delays(r) == 3
    cut = loop.take_fired()
    assert [token for token, _, _ in cut] == [3, 1, 7]  # deadline order
    assert all(lateness < -3000 for _, _, lateness in cut)  # recorded as answered before their deadlines
    stats = loop.stats()
    # the cut three were answered (a pipe is no listener: each answer fails and is counted), the others wait
    assert (stats["delays"], stats["send_failed"]) == (4, 3)
    assert loop.cut_delays(r) == 0
    loop.delay(w, 8, far + 3.5, 8)  # what is left is still ordered by deadline, a new one among them
    assert loop.release_delays() == [4, 6, 8, 5, 2]


def test_a_pending_delay_bounds_the_wait(loop: _notify.Loop, pipe: tuple[int, int]) -> None:
    """wait() with no timeout of its own still returns once a delay fired (its record is buffered)."""
    loop.delay(pipe[1], 1, time.monotonic() + 0.003, 7)
    give_up = time.monotonic() + _GUARD_S
    while loop.stats()["buffered"] == 0:
        assert time.monotonic() < give_up
        loop.wait(-1.0, 0.0, 1)
    (token, _, lateness), *rest = loop.take_fired()
    assert (token, rest) == (7, [])
    assert lateness >= 0


def test_after_an_answer_the_flush_still_ends_the_wait(loop: _notify.Loop, pipe: tuple[int, int]) -> None:
    """After answering a delay the loop sleeps with no ppoll timeout, its guard timer armed beforehand
    for the answer's flush: wait() must still come back for that flush, not at its own timeout."""
    loop.delay(pipe[1], 1, time.monotonic() + 0.010, 7)
    timeout = 30.0
    give_up = time.monotonic() + timeout
    assert loop.wait(timeout, 0.005, 1000) == ([], False, [])  # one record buffered, 1000 to fill a batch
    assert time.monotonic() < give_up  # it returned for the flush, not at the timeout
    stats = loop.stats()
    assert (stats["buffered"], stats["delays"], stats["send_failed"]) == (1, 0, 1)
    (token, _, lateness), *rest = loop.take_fired()
    assert (token, rest, lateness >= 0) == (7, [], True)
    # the guard is cleared once it fired: a later wait with nothing pending just times out
    started = time.monotonic()
    assert loop.wait(0.02, 0.005, 1000) == ([], False, [])
    assert time.monotonic() - started >= 0.02
