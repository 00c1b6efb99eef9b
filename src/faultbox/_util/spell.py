"""Nearest-name suggestions for 'did you mean ...?' messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to `name`, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' (did you mean "x"?)' or an empty string."""
    best = suggest(name, candidates)
    return f' (did you mean "{best}"?)' if best else ""
