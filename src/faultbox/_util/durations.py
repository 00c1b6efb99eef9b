"""Go-style durations: "500ms", "1.5s", "2m", "100us", "1h30m"."""

from __future__ import annotations

import re

from faultbox.errors import Code, FaultboxError

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


# The longest duration anything takes (Go's own limit is about 292 years): a week of delay or of
# timeout is already far beyond any test; beyond this, timers and the supervisor's wire overflow.
MAX_SECONDS = 7 * 24 * 3600.0


class DurationError(FaultboxError, ValueError):
    """Not a duration faultbox accepts (a ValueError too, for callers that parse several forms)."""

    code = Code.SPEC_BAD_ARGUMENT


def parse_duration(text: str) -> float:
    """Seconds from a Go duration string. A bare number is refused: the unit is always explicit."""
    s = text.strip()
    if s in ("0", ""):
        if s == "0":
            return 0.0
        raise DurationError('empty duration; write e.g. "500ms" or "2s"')
    negative = s.startswith("-")
    body = s[1:] if negative or s.startswith("+") else s
    pos = 0
    total = 0.0
    while pos < len(body):
        m = _PART.match(body, pos)
        if not m:
            raise DurationError(
                f'invalid duration "{text}"; write a number with a unit (ns, us, ms, s, m, h), e.g. "500ms"'
            )
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise DurationError(f'invalid duration "{text}"')
    if total > MAX_SECONDS:
        raise DurationError(f'duration "{text}" is longer than the longest faultbox takes (168h, a week)')
    return -total if negative else total


def format_duration(seconds: float) -> str:
    """The shortest readable Go-style form: 0.5 -> "500ms", 1.5 -> "1.5s", 120 -> "2m"."""
    if seconds == 0:
        return "0s"
    if seconds < 1e-3:
        us = seconds * 1e6
        return f"{us:g}us"
    if seconds < 1:
        return f"{round(seconds * 1e3, 3):g}ms"
    if seconds < 60 or seconds % 60:
        return f"{round(seconds, 3):g}s"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 60)}m"
