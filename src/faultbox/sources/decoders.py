"""Turning a service's output line into event fields (and native data for JSON lines).

raw     {"raw": text}
json    every top-level key as a string field (JSON spelling for non-strings; null -> absent),
        native values kept as the event's data. A line that is not a JSON object stays raw.
logfmt  key=value and key="quoted value" pairs
regex   the named groups; a line that does not match stays raw
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from faultbox.model.event import field_text
from faultbox.model.service import Decoder

_LOGFMT = re.compile(r'([\w.\-/]+)=("(?:[^"\\]|\\.)*"|\S*)')


@lru_cache(maxsize=64)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def decode(line: str, decoder: Decoder) -> tuple[dict[str, str], dict[str, Any] | None]:
    """(string fields, native data or None)."""
    kind = decoder.kind
    if kind == "json":
        text = line.strip()
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                fields: dict[str, str] = {}
                for key, value in obj.items():
                    s = field_text(value)
                    if s is not None:
                        fields[str(key)] = s
                return fields, obj
    elif kind == "logfmt":
        pairs = {m.group(1): _unquote(m.group(2)) for m in _LOGFMT.finditer(line)}
        if pairs:
            return pairs, None
    elif kind == "regex":
        m = _regex(decoder.pattern).search(line)
        if m:
            return {k: v for k, v in m.groupdict().items() if v is not None}, None
    return {"raw": line}, None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value
