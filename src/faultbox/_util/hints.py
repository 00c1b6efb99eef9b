"""Index hints for `where=` lambdas.

When a spec is compiled, the conjuncts of a one-parameter lambda such as

    lambda e: e.type == "wal" and e.data.get("action") == "INSERT" and e.data.get("order_id") == ev["order_id"]

are recognised as equalities on the event's type, service or fields. The trace uses them to scan only
the matching index entries instead of the whole log: `type=wal`, `action=INSERT`, and - evaluated
when the query runs, from the lambda's own closure - `order_id=<that order>`. The lambda stays the
judge of every candidate, except when the hint describes it completely and the event has no native
data (then the equalities on its string fields are exactly the lambda's answer).

Only accessors that never raise are used (`e.type`, `e.x`, `e.get("x")`, `e.data.get("x")`,
`e.fields.get("x")`), so a lambda that would raise on some event raises the same with or without a
hint. A hint whose dynamic value cannot be computed, or is not a string, is simply not used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType, FunctionType
from typing import Any


@dataclass(frozen=True)
class WhereHint:
    static: tuple[tuple[str, str], ...]  # (key, value): key is "type", "service" or a field name
    dynamic: tuple[tuple[str, CodeType], ...]  # (key, code of a function of the lambda's free vars)
    data_keys: frozenset[str]  # keys compared through e.data (exact only without native data)
    complete: bool  # the lambda is exactly the conjunction of these equalities

    def conditions(self, fn: Callable[..., Any]) -> tuple[dict[str, str], bool] | None:
        """The equalities for this call of the lambda and whether they are still complete, or None
        when they contradict each other (nothing can match)."""
        out: dict[str, str] = {}
        for key, value in self.static:
            if out.setdefault(key, value) != value:
                return None
        complete = self.complete
        if self.dynamic:
            closure = getattr(fn, "__closure__", None) or ()
            args = [cell.cell_contents for cell in closure]
            globals_ = getattr(fn, "__globals__", {})
            for key, code in self.dynamic:
                try:
                    value = FunctionType(code, globals_)(*args)
                except Exception:
                    complete = False
                    continue
                if not isinstance(value, str):
                    complete = False
                    continue
                if key in out and out[key] != value:
                    return None
                out[key] = value
        return out, complete


WHERE_HINTS: dict[CodeType, WhereHint] = {}


def hint_for(fn: object) -> WhereHint | None:
    code = getattr(fn, "__code__", None)
    return WHERE_HINTS.get(code) if code is not None else None
