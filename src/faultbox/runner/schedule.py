"""Scheduled parallel(): the order of the branches' cross-service steps, chosen by a schedule.

While a scheduled `parallel(..., interleavings=)` call runs, every scheduled service (each service
of the test that is not a mock and not marked `nondet(svc)`) has its socket sends held by the
supervisor (`SCHEDULED_SYSCALLS` on socket fds: connect, sendto, sendmsg, write, writev), one hold
tag per service. A send is where a service's step becomes visible to another service, so the order
in which the held sends are let go is the order of the cross-service steps. Writes to files, pipes
and the terminal (logs) are not steps and are never held.

The scheduler runs on the test's own thread while the branches run in theirs. Each step it waits
until the system is settled (see `Scheduler`), picks one service among those with a held send, and
releases that service's oldest held send. Which one it picks is the policy's business:

- `PctPolicy`: PCT (Burckhardt, Kothari, Musuvathi, Nagarakatte, ASPLOS 2010). The services get
  random distinct priorities; `depth - 1` priority change points are drawn uniformly over an
  estimated step count k; each step releases the highest-priority service that has a held send,
  and at a change point the service that just ran drops below every other.
- `PermutationPolicy`: fixed priorities, the branches' order given by the schedule (a branch's
  service is the one its first step targets; services no branch targets come after, in the test's
  order).
- `ReplayPolicy`: exactly the recorded order of services, waiting for each to have a held send.

The policies are pure (no I/O, no clock): the driver tells them which services have a held send
and which one it released. What a run released is recorded as a `Schedule("replay", releases=...)`
that replays it, and each release is a `schedule` event in the trace (site, step, service).
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from faultbox.model.decisions import Schedule
from faultbox.trace.log import TraceLog

TAG_PREFIX = "fb.schedule."
# PCT's estimate of the number of steps of a call, per scheduled service: change points are drawn
# over 1..k with k = STEPS_PER_SERVICE * services (a request, its reply and one more send each).
STEPS_PER_SERVICE = 3
DEFAULT_DEPTH = 2  # one change point: finds every ordering bug of depth 2 with probability >= 1/(n*k)

# After a release the scheduler waits until the released service holds its next send, or nothing at
# all has entered the trace for this long (the service may wait for another's answer, or be done).
QUIET_WINDOW = 0.1
# Replay: how long to wait for the service whose turn it is to send, before the replay is declared
# diverged (the rest of the call then runs in the branches' order).
REPLAY_PATIENCE = 3.0
SETTLE_LIMIT = 1.0  # a service that never stops logging still gets its turn taken after this long
_SLICE = 0.05  # the longest single wait: the branches' end and the deadline are looked at this often


def tag_of(service: str) -> str:
    return TAG_PREFIX + service


class Policy(Protocol):
    def pick(self, enabled: Sequence[str]) -> str | None:
        """The service to release next among `enabled` (those with a held send, in the test's
        service order); None to wait for another service to send first (replay only)."""

    def released(self, service: str) -> None:
        """One held send of `service` was released."""


class PctPolicy:
    """PCT's decisions for one call: priorities and change points drawn from `seed`."""

    def __init__(
        self, services: Sequence[str], seed: int, depth: int = DEFAULT_DEPTH, steps: int = 0, index: int = -1
    ) -> None:
        rng = random.Random(seed)
        d = max(depth, 1)
        self.steps = steps if steps > 0 else max(STEPS_PER_SERVICE * len(services), 1)
        drawn = _draw_without_replacement(len(services), d, self.steps, seed, index) if index >= 0 else None
        if drawn is not None:
            priorities, points = drawn
        else:
            priorities = list(range(d, d + len(services)))  # d .. d+n-1; the change points use 1 .. d-1
            rng.shuffle(priorities)
            points = sorted(rng.sample(range(1, self.steps + 1), min(d - 1, self.steps)))
        self.priority: dict[str, int] = dict(zip(services, priorities, strict=True))
        # change point i (1-based) lowers the service that ran that step to priority d - i
        self.drops: dict[int, int] = {step: d - i for i, step in enumerate(points, 1)}
        self.step = 0

    def pick(self, enabled: Sequence[str]) -> str | None:
        if not enabled:
            return None
        return max(enabled, key=lambda s: self.priority.get(s, 0))

    def released(self, service: str) -> None:
        self.step += 1
        drop = self.drops.get(self.step)
        if drop is not None:
            self.priority[service] = drop


_MAX_SPACE = 50_000  # schedules to enumerate for draws without replacement; beyond, draws are independent


def _draw_without_replacement(
    n: int, depth: int, steps: int, seed: int, index: int
) -> tuple[list[int], list[int]] | None:
    """Draw `index` of a seeded shuffle of every PCT schedule of n services (each priority order
    with each set of depth - 1 change points among `steps`): the leaves of one site, numbered
    0, 1, ..., are distinct schedules, each on its own a uniform draw, and n! * C(steps, depth - 1)
    leaves cover them all. None when there are too many to enumerate."""
    changes = min(depth - 1, steps)
    orders = math.factorial(n)
    space = orders * math.comb(steps, changes)
    if space == 0 or space > _MAX_SPACE:
        return None
    every = [
        (p, c)
        for p in itertools.permutations(range(depth, depth + n))
        for c in itertools.combinations(range(1, steps + 1), changes)
    ]
    random.Random(seed).shuffle(every)
    priorities, points = every[index % space]
    return list(priorities), list(points)


class PermutationPolicy:
    """Fixed priorities: the services of the branches in `order`, then the others."""

    def __init__(self, services: Sequence[str], order: Sequence[int], targets: Mapping[int, str]) -> None:
        self.services = list(services)
        self.order = list(order)
        self.targets = targets  # branch index -> the service its first step targets (filled as they run)

    def ranking(self) -> list[str]:
        ranked: list[str] = []
        for branch in self.order:
            svc = self.targets.get(branch)
            if svc is not None and svc in self.services and svc not in ranked:
                ranked.append(svc)
        ranked.extend(s for s in self.services if s not in ranked)
        return ranked

    def pick(self, enabled: Sequence[str]) -> str | None:
        for svc in self.ranking():
            if svc in enabled:
                return svc
        return None

    def released(self, service: str) -> None:
        pass


class ReplayPolicy:
    """The recorded order; after it (or once the run diverged from it), the branches' order."""

    def __init__(self, releases: Sequence[str], fallback: Policy) -> None:
        self.releases = list(releases)
        self.fallback = fallback
        self.position = 0
        self.diverged = False

    @property
    def due(self) -> str | None:
        if self.diverged or self.position >= len(self.releases):
            return None
        return self.releases[self.position]

    def pick(self, enabled: Sequence[str]) -> str | None:
        due = self.due
        if due is None:
            return self.fallback.pick(enabled)
        return due if due in enabled else None

    def released(self, service: str) -> None:
        if self.due is not None:
            self.position += 1
        else:
            self.fallback.released(service)

    def diverge(self) -> None:
        self.diverged = True


def make_policy(schedule: Schedule, services: Sequence[str], targets: Mapping[int, str]) -> Policy:
    if schedule.mode == "pct":
        return PctPolicy(services, schedule.seed, schedule.depth, index=schedule.index)
    identity = PermutationPolicy(services, schedule.order or range(len(targets) or len(services)), targets)
    if schedule.mode == "replay":
        return ReplayPolicy(schedule.releases, identity)
    return identity


class Supervisor(Protocol):
    def release(self, tag: str, err: int, count: int) -> int: ...


class Scheduler:
    """Drives one scheduled parallel() call: the policy's picks become releases of held sends.

    The state it decides on is read from the trace: a syscall event whose decision is
    `hold(<tag>)` is a send the supervisor parked. Every wait is a wait on the trace's append
    notification, bounded by a slice so that the branches' end and the test's deadline are seen.
    """

    def __init__(
        self,
        log: TraceLog,
        supervisor: Supervisor,
        services: Sequence[str],
        schedule: Schedule,
        site: str,
        emit: Callable[[str, str, dict[str, str]], object],
        checkpoint: Callable[[], None],
        *,
        quiet: float = QUIET_WINDOW,
        patience: float = REPLAY_PATIENCE,
    ) -> None:
        self.log = log
        self.supervisor = supervisor
        self.services = list(services)
        self.schedule = schedule
        self.site = site
        self.emit = emit
        self.checkpoint = checkpoint
        self.quiet = quiet
        self.patience = patience
        self.targets: dict[int, str] = {}
        self._targets_lock = threading.Lock()
        self.policy = make_policy(schedule, self.services, self.targets)
        self.releases: list[str] = []
        self._holds = {f"hold({tag_of(s)})": s for s in self.services}
        self.parked = dict.fromkeys(self.services, 0)
        self.freed = dict.fromkeys(self.services, 0)
        self._seen = 0
        self._last_event = time.monotonic()

    # -- what the branches tell -------------------------------------------------------------------

    def saw_step(self, branch: str, service: str) -> None:
        """A branch's step targets `service` (its first one names the branch's service)."""
        if not branch:
            return
        index = branch.rpartition(".")[2]
        if index.isdigit():
            with self._targets_lock:
                self.targets.setdefault(int(index) - 1, service)

    def skip_to(self, seen: int) -> None:
        """Look only at events after the first `seen` (those before the call are not its own)."""
        self._seen = seen

    # -- the trace --------------------------------------------------------------------------------

    def _read(self) -> bool:
        """Take in the events appended since the last look; whether there were any."""
        with self.log.lock:
            new = self.log.events[self._seen :]
            self._seen += len(new)
        if not new:
            return False
        for ev in new:
            if ev.type == "schedule":
                continue
            self._last_event = time.monotonic()
            if ev.type == "syscall":
                svc = self._holds.get(ev.fields.get("decision", ""))
                if svc is not None and svc == ev.service:
                    self.parked[svc] += 1
        return True

    def held(self, service: str) -> int:
        return self.parked[service] - self.freed[service]

    def enabled(self) -> list[str]:
        return [s for s in self.services if self.held(s) > 0]

    def _wait(self, until: Callable[[], bool], limit: float) -> bool:
        """Wait (on the trace) until `until()` holds or `limit` seconds pass; whether it held."""
        end = time.monotonic() + limit
        while True:
            self._read()
            if until():
                return True
            now = time.monotonic()
            if now >= end:
                return False
            self.checkpoint()
            self.log.wait_beyond(self._seen, min(end - now, _SLICE))

    def _settle(self, released: str | None, done: Callable[[], bool]) -> None:
        """Until `released` holds its next send, or the trace has been quiet for the window (or the
        branches ended)."""
        before = self.parked[released] if released is not None else 0

        def settled() -> bool:
            if released is not None and self.parked[released] > before:
                return True
            return done() or time.monotonic() - self._last_event >= self.quiet

        self._last_event = time.monotonic()
        self._wait(settled, SETTLE_LIMIT)

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, done: Callable[[], bool]) -> None:
        """Release held sends one at a time until the branches have all returned."""
        self._settle(None, done)
        while not done():
            self.checkpoint()
            self._read()
            enabled = self.enabled()
            if not enabled:
                self._wait(lambda: bool(self.enabled()) or done(), _SLICE)
                continue
            choice = self.policy.pick(enabled)
            if choice is None:  # replay: the service whose turn it is has not sent yet
                self._await_turn(done)
                continue
            self._release(choice)
            self._settle(choice, done)

    def _await_turn(self, done: Callable[[], bool]) -> None:
        """Replay: wait for the service whose turn it is; after the patience, the replay diverged."""
        if self._wait(lambda: bool(self.policy.pick(self.enabled())) or done(), self.patience) or done():
            return
        if isinstance(self.policy, ReplayPolicy):
            due = self.policy.due or ""
            self.policy.diverge()
            step = str(len(self.releases) + 1)
            self.emit("schedule", due, {"site": self.site, "step": step, "diverged": "true"})

    def _release(self, service: str) -> None:
        freed = self.supervisor.release(tag_of(service), 0, 1)
        self.freed[service] += max(freed, 1)  # a held send the supervisor no longer has is gone too
        self.policy.released(service)
        self.releases.append(service)
        self.emit("schedule", service, {"site": self.site, "step": str(len(self.releases)), "mode": self.schedule.mode})

    def realised(self) -> Schedule:
        return Schedule("replay", releases=tuple(self.releases))
