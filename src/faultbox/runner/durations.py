"""How long each test took last time, kept beside the spec in `.faultbox/durations.json`, so that a
parallel run can start the longest tests first: a long test started last would otherwise finish
alone while the other workers sit idle (longest-first is the classic greedy answer to that).

A long test is usually long because it waits: its faults delay replies by seconds, its steps wait
for a timeout. Two of them in flight at once leave the cores idle while short tests, which could use
them, wait in the queue; so `Dispatch` keeps the long ones apart (at most one per two workers) and
hands the short ones out in their waits, as long as enough short work is left to fill them.

The file is a cache: unreadable or unwritable, it is ignored. A test it does not know goes first (it
may be long), but is not kept apart from the others."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections.abc import Iterable, Mapping, Sequence

from faultbox.model.result import TestResult

CACHE_DIR = ".faultbox"
FILE = "durations.json"
LONG_FACTOR = 3  # a test is long if it took this many times the suite's median or more


def cache_path(spec_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(spec_path)), CACHE_DIR, FILE)


def load(spec_path: str) -> dict[str, int]:
    try:
        with open(cache_path(spec_path), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): int(v) for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool)}


def longest_first(names: Iterable[str], known: Mapping[str, int]) -> list[str]:
    """Unknown tests first (they may be long), then by their last duration, longest first; ties
    keep the suite's order."""
    ordered = list(names)
    position = {n: i for i, n in enumerate(ordered)}
    return sorted(ordered, key=lambda n: (n in known, -known.get(n, 0), position[n]))


class Dispatch:
    """Which waiting test a free worker takes: the first in longest-first order, unless that one is
    long, enough long tests are already running, and the short tests left would fill its time;
    then the first short one. (Held back with too little short work left, a long test would only
    start later and end the run later.)"""

    def __init__(self, names: Iterable[str], known: Mapping[str, int], jobs: int) -> None:
        self.order = longest_first(names, known)  # the tests waiting, before any has started
        self.known = known
        times = [known[n] for n in self.order if n in known]
        threshold = LONG_FACTOR * statistics.median(times) if times else 0
        self._long = {n for n in self.order if n in known and known[n] >= threshold > 0}
        self.long_at_once = max(1, jobs // 2)

    def is_long(self, name: str) -> bool:
        return name in self._long

    def pick(self, waiting: Sequence[str], running: Iterable[str]) -> int:
        """The index in `waiting` (what is left of `order`, in its order) of the test to start next."""
        first = waiting[0]
        if not self.is_long(first) or sum(map(self.is_long, running)) < self.long_at_once:
            return 0
        short = [i for i, n in enumerate(waiting) if not self.is_long(n)]
        if sum(self.known.get(waiting[i], 0) for i in short) < self.known[first]:
            return 0
        return short[0]


def save(spec_path: str, results: Iterable[TestResult]) -> None:
    path = cache_path(spec_path)
    known = load(spec_path)
    known.update(own_durations(list(results)))
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".durations-", dir=os.path.dirname(path))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(known, f, indent=0, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only spec directory: the next run just does not know the durations


def own_durations(results: Sequence[TestResult]) -> dict[str, int]:
    """Each test's duration with its start counted as the run's median start. Every test starts the
    spec's services, so their start costs about the same in each; but a worker's first test also
    pays the worker's one-time starts (a database from its template, the proxy and reader
    processes: seconds), which would make whichever tests ran first look long next time."""
    starts = [t.timings["start_ms"] for t in results if "start_ms" in t.timings]
    if len(starts) < 3:  # too few to say what a usual start costs
        return {t.name: t.duration_ms for t in results}
    usual = int(statistics.median(starts))
    return {t.name: max(t.duration_ms - t.timings.get("start_ms", usual) + usual, 0) for t in results}
