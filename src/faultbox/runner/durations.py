"""How long each test took last time, kept beside the spec in `.faultbox/durations.json`, so that a
parallel run can start the longest tests first: a long test started last would otherwise finish
alone while the other workers sit idle (longest-first is the classic greedy answer to that).

The file is a cache: unreadable or unwritable, it is ignored, and a test it does not know counts as
long (it may be)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping

from faultbox.model.result import TestResult

CACHE_DIR = ".faultbox"
FILE = "durations.json"


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


def save(spec_path: str, results: Iterable[TestResult]) -> None:
    path = cache_path(spec_path)
    known = load(spec_path)
    known.update({t.name: t.duration_ms for t in results})
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".durations-", dir=os.path.dirname(path))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(known, f, indent=0, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only spec directory: the next run just does not know the durations
