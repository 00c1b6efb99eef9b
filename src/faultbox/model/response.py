"""What every step returns to spec code."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from faultbox._util.frozen import FrozenDict, freeze


@dataclass(frozen=True, slots=True)
class Response:
    """The reply of a step. `ok` means the exchange completed (an HTTP 503 is ok=True, status=503);
    `error` holds the transport or protocol error text when it did not (`ok=False`)."""

    status: int = 0
    body: str = ""
    data: Any = None
    ok: bool = True
    error: str = ""
    duration_ms: int = 0
    headers: FrozenDict = field(default_factory=FrozenDict)
    rows_affected: int | None = None

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
