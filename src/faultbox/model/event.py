"""The trace event, and how spec code reads it.

Every event has `seq` (per test, from 1), `ts`, `type`, `service`, string `fields` and a vector clock
(DECISIONS §4). Spec code reads it the same way everywhere (monitors, `where=` lambdas, `events()`):

    e.type  e.service  e.seq  e.fields  e.data          the event itself
    e["x"]  e.get("x", default)  e.x                     the string field "x"

`e["type"]`, `e["service"]` and `e["seq"]` return the event's own type, service and seq, as the
seed's monitors expect (`event["type"] == "stdout"`); a decoded field with one of those names stays
available as `e.fields["type"]`. `e.data` keeps native JSON types when the source had them (a JSON
log line); otherwise it is the string fields.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from faultbox._util.frozen import FrozenDict, freeze

# Names of event types emitted by faultbox itself.
SYSCALL = "syscall"
STDOUT = "stdout"
STDERR = "stderr"
STEP_SEND = "step_send"
STEP_RECV = "step_recv"
SERVICE_STARTED = "service_started"
SERVICE_READY = "service_ready"
SERVICE_EXITED = "service_exited"
FAULT_APPLIED = "fault_applied"
FAULT_REMOVED = "fault_removed"
FAULT_NOT_FIRED = "fault_not_fired"
SOURCE_ERROR = "source_error"
WAL = "wal"
TOPIC = "topic"

_CORE_KEYS = ("type", "service", "seq")


class FieldMissing(KeyError):
    """`e["x"]` on an event without field x."""

    def __str__(self) -> str:
        return str(self.args[0])


def field_text(value: Any) -> str | None:
    """The string form of a decoded value: JSON spelling for non-strings, None for null."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


class Event:
    """One entry of the trace. `seq` and `vclock` are set when the event enters a trace."""

    __slots__ = ("_data", "fields", "mirrored", "seq", "service", "ts", "type", "vclock")

    def __init__(
        self,
        type: str,
        service: str,
        fields: Mapping[str, str] | None = None,
        data: Any = None,
        ts: float | None = None,
        mirrored: bool = True,
    ) -> None:
        self.seq = 0
        # Whether the top-level keys of native data are also string fields (decoded log lines, row
        # changes): the trace's indexes rely on it. A mock event's data is the request body: not.
        self.mirrored = mirrored or data is None
        self.ts = time.time() if ts is None else ts
        self.type = type
        self.service = service
        self.fields: FrozenDict = fields if isinstance(fields, FrozenDict) else FrozenDict(fields or {})
        self._data = None if data is None else freeze(data)
        self.vclock: Mapping[str, int] = {}

    @property
    def data(self) -> Any:
        return self._data if self._data is not None else self.fields

    @property
    def has_native_data(self) -> bool:
        return self._data is not None

    def get(self, key: str, default: Any = None) -> Any:
        if key in _CORE_KEYS:
            return getattr(self, key)
        return self.fields.get(key, default)

    def __getitem__(self, key: str) -> Any:
        if key in _CORE_KEYS:
            return getattr(self, key)
        try:
            return self.fields[key]
        except KeyError:
            known = ", ".join(sorted(self.fields)) or "none"
            raise FieldMissing(
                f'event #{self.seq} ({self.type} from {self.service or "-"}) has no field "{key}" '
                f'(its fields: {known}); use e.get("{key}") when the field is optional'
            ) from None

    def __contains__(self, key: str) -> bool:
        return key in _CORE_KEYS or key in self.fields

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal attribute lookup fails: a field name, or None.
        if name.startswith("_"):
            raise AttributeError(name)
        return self.fields.get(name)

    def __repr__(self) -> str:
        return f"<event #{self.seq} {self.type} {self.service or '-'}>"

    def describe(self) -> str:
        """A one-line human summary used in failure messages."""
        parts = [f"#{self.seq}", self.type]
        if self.service:
            parts.append(self.service)
        shown = [f"{k}={_short(v)}" for k, v in self.fields.items() if k != "data"][:8]
        return " ".join(parts + shown)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "ts": self.ts,
            "type": self.type,
            "service": self.service,
            "fields": dict(self.fields),
            "vclock": dict(self.vclock),
        }
        if self._data is not None:
            out["data"] = self._data
            if not self.mirrored:
                out["mirrored"] = False
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        ev = cls(
            d["type"], d.get("service", ""), d.get("fields") or {}, d.get("data"), d.get("ts"), d.get("mirrored", True)
        )
        ev.seq = int(d.get("seq", 0))
        ev.vclock = dict(d.get("vclock") or {})
        return ev


def _short(value: str, limit: int = 60) -> str:
    value = value.replace("\n", "\\n")
    return value if len(value) <= limit else value[: limit - 1] + "…"
