"""The trace event, and how spec code reads it.

Every event has `seq` (per test, from 1), `ts`, `type`, `service`, string `fields` and a vector clock
(DECISIONS §4). Spec code reads it the same way everywhere (monitors, `where=` lambdas, `events()`):

    e.type  e.service  e.seq  e.fields  e.data          the event itself
    e.event_type  e.timestamp                            the reference's spellings (below)
    e["x"]  e.get("x", default)  e.x                     the string field "x"

`e["type"]`, `e["service"]` and `e["seq"]` return the event's own type, service and seq, as the
seed's monitors expect (`event["type"] == "stdout"`); a decoded field with one of those names stays
available as `e.fields["type"]`. `e.data` keeps native JSON types when the source had them (a JSON
log line); otherwise it is the string fields.

Causal methods read the vector clocks (`a.happens_before(b)`, `a.concurrent_with(b)`,
`a.directly_caused_by(m)`) and the trace the event belongs to (`e.preceded_by(m)`,
`e.followed_by_within(m, "500ms")`); the trace sets itself on each event it appends.

`e.event_type` is the reference's dotted type: `syscall.<syscall>` for an event with a syscall
field, `lifecycle.started` / `lifecycle.ready` for a service starting, `step_send.<target>` /
`step_recv.<target>`, `mock.<op>`, and the type itself otherwise. `e.timestamp` is the event's time
as RFC 3339 text in UTC with up to nanosecond digits (`2024-05-01T10:00:00.123456Z`), as the
reference writes it; `e.ts` stays the number of seconds. A decoded field named `event_type` or
`timestamp` stays readable as `e["timestamp"]` and `e.fields["timestamp"]`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from faultbox._util.frozen import FrozenDict, freeze
from faultbox.model.matcher import EventArgError, Matcher, kind, to_matcher, window_seconds

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


class EventTrace(Protocol):
    """What an event's causal methods ask of the trace it is in (trace.log.TraceLog)."""

    def matching(self, matcher: Matcher, *, after: int = 0, before: int | None = None) -> list[Event]:
        """Events matching, with after < seq < before, in seq order."""
        ...

    def service_events(self, service: str) -> list[Event]:
        """The events of one service in seq order (the n-th has clock[service] == n)."""
        ...


def clock_before(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """Vector clock a strictly precedes b (a missing entry is 0). An empty clock (an event without a
    service: the runner's own notices) is ordered with nothing."""
    if not a or not b:
        return False
    for key, value in a.items():
        if value > b.get(key, 0):
            return False
    return dict(a) != dict(b)


class Event:
    """One entry of the trace. `seq` and `vclock` are set when the event enters a trace."""

    __slots__ = ("_data", "_trace", "fields", "mirrored", "seq", "service", "ts", "type", "vclock")

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
        self._trace: EventTrace | None = None

    @property
    def data(self) -> Any:
        return self._data if self._data is not None else self.fields

    @property
    def event_type(self) -> str:
        return event_type(self.type, self.fields, self.service)

    @property
    def timestamp(self) -> str:
        return rfc3339(self.ts)

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

    # -- causal relations (vector clocks) ------------------------------------------------------

    def happens_before(self, other: Event) -> bool:
        """This event causally precedes `other` (its vector clock is strictly smaller)."""
        return clock_before(self.vclock, _event_arg(other, "happens_before").vclock)

    def happens_after(self, other: Event) -> bool:
        return clock_before(_event_arg(other, "happens_after").vclock, self.vclock)

    def concurrent_with(self, other: Event) -> bool:
        """Neither precedes the other. An event is not concurrent with itself."""
        other = _event_arg(other, "concurrent_with")
        if other is self:
            return False
        return not clock_before(self.vclock, other.vclock) and not clock_before(other.vclock, self.vclock)

    def same_service_as(self, other: Event) -> bool:
        return bool(self.service) and self.service == _event_arg(other, "same_service_as").service

    def same_correlation_as(self, other: Event) -> bool:
        mine = self.fields.get("correlation_id", "")
        return bool(mine) and mine == _event_arg(other, "same_correlation_as").fields.get("correlation_id", "")

    def duration_since(self, other: Event) -> int:
        """Nanoseconds from `other` to this event (negative when `other` came later); compare it
        with duration("200ms")."""
        return round((self.ts - _event_arg(other, "duration_since").ts) * 1e9)

    def directly_caused_by(self, matcher: Any) -> bool:
        """A matching event is an immediate causal predecessor: it happens before this event and no
        other predecessor lies between them. The candidates are, for each service this event's clock
        knows, the latest of its events that this event knows of."""
        m = to_matcher(matcher, "e.directly_caused_by()")
        trace = self._trace
        if trace is None:
            return False
        frontier: list[Event] = []
        for svc, n in self.vclock.items():
            if svc == self.service:
                n -= 1
            events = trace.service_events(svc)
            if 0 < n <= len(events):
                frontier.append(events[n - 1])
        for cand in frontier:
            if m.match(cand) and not any(clock_before(cand.vclock, o.vclock) for o in frontier if o is not cand):
                return True
        return False

    # -- order in the trace --------------------------------------------------------------------

    def preceded_by(self, matcher: Any) -> bool:
        """Some earlier event of the trace matches."""
        return bool(self._around(matcher, "preceded_by", before=True))

    def followed_by(self, matcher: Any) -> bool:
        """Some later event of the trace matches (so far: the trace keeps growing)."""
        return bool(self._around(matcher, "followed_by", before=False))

    def preceded_by_within(self, matcher: Any, window: Any) -> bool:
        """Some earlier event matches, at most `window` ("500ms", or nanoseconds) before this one."""
        limit = window_seconds(window, "e.preceded_by_within()")
        return any(abs(self.ts - e.ts) <= limit for e in self._around(matcher, "preceded_by_within", before=True))

    def followed_by_within(self, matcher: Any, window: Any) -> bool:
        """Some later event matches, at most `window` after this one."""
        limit = window_seconds(window, "e.followed_by_within()")
        return any(abs(e.ts - self.ts) <= limit for e in self._around(matcher, "followed_by_within", before=False))

    def _around(self, matcher: Any, what: str, *, before: bool) -> list[Event]:
        m = to_matcher(matcher, f"e.{what}()")
        trace = self._trace
        if trace is None:
            return []
        if before:
            return trace.matching(m, before=self.seq)
        return trace.matching(m, after=self.seq)

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


def _event_arg(value: Any, what: str) -> Event:
    if not isinstance(value, Event):
        raise EventArgError(
            f"e.{what}(): the argument must be an event, got {kind(value)}",
            "pass an event from events(), first(), last() or a monitor",
        )
    return value


class EventList(list[Event]):
    """What the trace queries return: a list of events in seq order, with the reference's
    `.first`, `.last` and `.count` (attributes) and `.map(fn)`, `.filter(fn)`, `.reduce(fn, initial)`."""

    @property
    def first(self) -> Event | None:
        return self[0] if self else None

    @property
    def last(self) -> Event | None:
        return self[-1] if self else None

    @property  # the reference's attribute (an int), in place of list.count(x)
    def count(self) -> int:  # type: ignore[override]
        return len(self)

    def map(self, fn: Callable[[Event], Any]) -> list[Any]:
        return [fn(e) for e in self]

    def filter(self, fn: Callable[[Event], Any]) -> EventList:
        return EventList(e for e in self if fn(e))

    def reduce(self, fn: Callable[[Any, Event], Any], initial: Any) -> Any:
        acc = initial
        for e in self:
            acc = fn(acc, e)
        return acc


_LIFECYCLE = {SERVICE_STARTED: "lifecycle.started", SERVICE_READY: "lifecycle.ready"}


def event_type(type: str, fields: Mapping[str, str], service: str = "") -> str:
    """The reference's dotted event type (its `event_type`), derived from the type and fields."""
    syscall = fields.get("syscall")
    if syscall:
        return f"{type}.{syscall}"
    if type in _LIFECYCLE:
        return _LIFECYCLE[type]
    if type in (STEP_SEND, STEP_RECV):
        return f"{type}.{fields.get('target') or service}"
    if type == "mock" and fields.get("op"):
        return f"mock.{fields['op']}"
    return type


def rfc3339(ts: float) -> str:
    """Seconds since the epoch as RFC 3339 text in UTC, trailing zeros of the fraction dropped
    (Go's RFC3339Nano layout): 2024-05-01T10:00:00.5Z."""
    moment = datetime.fromtimestamp(ts, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def _short(value: str, limit: int = 60) -> str:
    value = value.replace("\n", "\\n")
    return value if len(value) <= limit else value[: limit - 1] + "…"
