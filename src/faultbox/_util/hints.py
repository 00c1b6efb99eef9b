"""Index hints for `where=` lambdas.

When a spec is compiled, a lambda such as `lambda e: e.type == "wal" and ...` is recognised: any event
it accepts must have type "wal". The trace uses that to scan only the "wal" events instead of the
whole log. The hint is keyed by the lambda's code object; a lambda without a hint is scanned fully.
"""

from __future__ import annotations

from types import CodeType

WHERE_HINTS: dict[CodeType, dict[str, str]] = {}


def hint_for(fn: object) -> dict[str, str] | None:
    code = getattr(fn, "__code__", None)
    return WHERE_HINTS.get(code) if code is not None else None
