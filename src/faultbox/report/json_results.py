"""The whole result of a run, with every event, as JSON."""

from __future__ import annotations

import json
import os
from typing import IO, Any

from faultbox.model.result import RunResult


def dump(result: RunResult, out: IO[str], *, with_events: bool = True) -> None:
    json.dump(result.to_dict(with_events), out, indent=2, default=_default, ensure_ascii=False)
    out.write("\n")


def write(result: RunResult, path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        dump(result, f)
    os.replace(tmp, path)


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)
