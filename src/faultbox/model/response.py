"""What every step returns to spec code."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from faultbox._util.frozen import FrozenDict, FrozenList, freeze

_SAME_AS_DATA: Any = object()


@dataclass(frozen=True, slots=True)
class Response:
    """The reply of a step. `ok` means the exchange completed (an HTTP 503 is ok=True, status=503);
    `error` holds the transport or protocol error text when it did not (`ok=False`).

    `data` has the reference's shape; `value` is faultbox's own, which is `data` itself except
    where the two differ: a Redis reply (`data` is `{"value": reply}`, `value` the reply) and a
    Kafka consume (`data` the first message, `value` every message returned)."""

    status: int = 0
    body: str = ""
    data: Any = None
    ok: bool = True
    error: str = ""
    duration_ms: int = 0
    headers: FrozenDict = field(default_factory=FrozenDict)
    rows_affected: int | None = None
    value: Any = _SAME_AS_DATA

    def __post_init__(self) -> None:
        if self.value is _SAME_AS_DATA:
            object.__setattr__(self, "value", self.data)

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        if not self.ok:
            return f'<response error="{self.error}">'
        return f"<response status={self.status}>" if self.status else "<response ok>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "ok": self.ok,
            "error": self.error,
            "duration_ms": self.duration_ms,
            "body": self.body[:2048],
        }


class ValueList(FrozenList):
    """A list reply in `.data` (Redis KEYS, LRANGE...): the list itself, as the reference's docs and
    the seed page read it (`len(r.data)`, `for k in r.data`), which also answers `r.data["value"]`
    and `r.data.get("value")` and equals `{"value": [...]}`, as the reference's code returns it."""

    __slots__ = ()

    def __getitem__(self, index: Any) -> Any:
        if index == "value":
            return FrozenList(self)
        return super().__getitem__(index)

    def get(self, key: str, default: Any = None) -> Any:
        return FrozenList(self) if key == "value" else default

    def __eq__(self, other: object) -> bool:
        if isinstance(other, dict):
            return list(other) == ["value"] and list.__eq__(self, other["value"])
        return list.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (ValueList, (list(self),))


def reference_value(reply: Any) -> Any:
    """The reference's `.data` of a reply: `{"value": reply}`, or a ValueList for a list reply."""
    if isinstance(reply, list):
        return ValueList(freeze(reply))
    return FrozenDict(value=freeze(reply))


def decode_body(body: str) -> Any:
    """`.data` of a response: the JSON value when the body is JSON, else the body text."""
    text = body.strip()
    if text[:1] in ("{", "[", '"') or text in ("true", "false", "null") or _looks_numeric(text):
        try:
            return freeze(json.loads(text))
        except ValueError:
            pass
    return body


def _looks_numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or (text[0] == "-" and text[1:2].isdigit()))
