"""Immutable list and dict types.

Spec globals are frozen after their module runs (DECISIONS §2), and trace data handed to spec code is
frozen so that a monitor cannot rewrite history. Both types behave like their mutable parents for
reading, so library code and spec code can use them unchanged.
"""

from __future__ import annotations

from typing import Any, NoReturn

from faultbox.errors import Code, FaultboxError


class FrozenError(FaultboxError, TypeError):
    """A frozen value was mutated (a TypeError too, as mutating a tuple is in Python)."""

    code = Code.SPEC_FROZEN


def _refuse(kind: str) -> NoReturn:
    raise FrozenError(f"cannot modify a frozen {kind}; build a new {kind} instead (e.g. a + [x], dict(d, k=v))")


class FrozenList(list[Any]):
    __slots__ = ()

    def _mutate(self, *args: object, **kwargs: object) -> NoReturn:
        _refuse("list")

    append = extend = insert = remove = pop = clear = sort = reverse = _mutate
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _mutate

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))


class FrozenDict(dict[Any, Any]):
    __slots__ = ()

    def _mutate(self, *args: object, **kwargs: object) -> NoReturn:
        _refuse("dict")

    __setitem__ = __delitem__ = _mutate
    pop = popitem = clear = update = setdefault = _mutate
    __ior__ = _mutate

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))


def freeze(value: Any) -> Any:
    """A deep frozen copy of lists and dicts; other values are returned as they are."""
    if isinstance(value, (FrozenList, FrozenDict)):
        return value
    if isinstance(value, list):
        return FrozenList(freeze(v) for v in value)
    if isinstance(value, dict):
        return FrozenDict((k, freeze(v)) for k, v in value.items())
    return value


def thaw(value: Any) -> Any:
    """A plain mutable deep copy (for JSON encoding and for handing values to libraries)."""
    if isinstance(value, (list, tuple)) and not isinstance(value, str):
        return [thaw(v) for v in value]
    if isinstance(value, dict):
        return {k: thaw(v) for k, v in value.items()}
    return value
