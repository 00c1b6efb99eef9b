"""Protocol faults: what `response()`, `error()`, `delay(delay=)`, `drop()` and `duplicate()` return,
and the rule that binds one of them to a service's interface.

A ProxyFault is unbound (it names no interface); a ProxyRule is a fault on `svc.iface`, checked
against what that interface's protocol can match and do (PROTOCOL_FAULTS). The proxy decides with
rules; the runner scopes them, like syscall rules.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from faultbox._util.durations import format_duration


class ProxyAction(enum.Enum):
    RESPOND = "respond"
    ERROR = "error"
    DELAY = "delay"
    DROP = "drop"
    DUPLICATE = "duplicate"


# The builtin that makes each action, for messages.
ACTION_BUILTINS = {
    ProxyAction.RESPOND: "response",
    ProxyAction.ERROR: "error",
    ProxyAction.DELAY: "delay",
    ProxyAction.DROP: "drop",
    ProxyAction.DUPLICATE: "duplicate",
}


@dataclass(frozen=True, slots=True)
class ProtocolFaults:
    """What a protocol's proxy can match on and what it can do."""

    matchers: tuple[str, ...]
    actions: frozenset[ProxyAction]
    answers: tuple[str, ...] = ()  # what an error()/response() on it may set: status, sqlstate, ...


_HTTP = ProtocolFaults(
    ("method", "path"),
    frozenset({ProxyAction.RESPOND, ProxyAction.ERROR, ProxyAction.DELAY, ProxyAction.DROP}),
    ("status", "message", "body", "headers"),
)

PROTOCOL_FAULTS: dict[str, ProtocolFaults] = {
    "http": _HTTP,
    "http2": _HTTP,
    "postgres": ProtocolFaults(
        ("query",),
        frozenset({ProxyAction.ERROR, ProxyAction.DELAY, ProxyAction.DROP}),
        ("sqlstate", "message"),
    ),
    "redis": ProtocolFaults(
        ("command", "key"),
        frozenset({ProxyAction.RESPOND, ProxyAction.ERROR, ProxyAction.DELAY, ProxyAction.DROP}),
        ("message", "body", "value"),
    ),
    "kafka": ProtocolFaults(
        ("method", "topic"),
        frozenset({ProxyAction.ERROR, ProxyAction.DELAY, ProxyAction.DROP, ProxyAction.DUPLICATE}),
        ("code",),
    ),
    "tcp": ProtocolFaults(("method",), frozenset({ProxyAction.DELAY, ProxyAction.DROP})),
}


@dataclass(frozen=True, slots=True)
class ProxyFault:
    """A protocol fault, not yet bound to an interface.

    `matchers` are (name, glob) pairs, all of which must match a request; `probability` is a
    fraction; `code` is a Kafka error code (name or number) and `sqlstate` a PostgreSQL one."""

    action: ProxyAction
    matchers: tuple[tuple[str, str], ...] = ()
    probability: float = 1.0
    status: int | None = None
    body: str | None = None
    message: str | None = None
    sqlstate: str | None = None
    code: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    nil: bool = False  # response(value=None) on Redis: answer nil
    times: int = 0  # fire for the first `times` matching requests only (0: every one)
    label: str = ""

    def matcher(self, name: str) -> str | None:
        for key, value in self.matchers:
            if key == name:
                return value
        return None

    def describe(self) -> str:
        """`error(path=/v1/charges, status=503) 30%`: what the rule does, for events and reports."""
        parts = [f"{k}={v}" for k, v in self.matchers]
        for name in ("status", "sqlstate", "code", "message"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value}")
        if self.delay:  # a delay rule's own, or how long an error or response waits before it answers
            parts.append(f"delay={format_duration(self.delay)}")
        if self.action is ProxyAction.RESPOND and self.nil:
            parts.append("value=None")
        if self.times:
            parts.append(f"times={self.times}")
        prob = f" {self.probability * 100:g}%" if self.probability < 1 else ""
        label = f' label="{self.label}"' if self.label else ""
        return f"{ACTION_BUILTINS[self.action]}({', '.join(parts)}){prob}{label}"

    def __repr__(self) -> str:
        return f"<protocol fault {self.describe()}>"


@dataclass(frozen=True, slots=True)
class ProxyRule:
    """A protocol fault on one interface of one service."""

    service: str
    interface: str
    protocol: str
    fault: ProxyFault

    @property
    def target(self) -> str:
        return f"{self.service}.{self.interface}"

    @property
    def keyword(self) -> str:
        """What a report's fault table shows in the keyword column: the interface."""
        return self.interface

    def describe(self) -> str:
        return self.fault.describe()


def check_fault_for(fault: ProxyFault, protocol: str, target: str) -> str | None:
    """Why `fault` cannot apply to an interface speaking `protocol` (None when it can): a protocol
    with no proxy, an action it cannot take, or a matcher it does not have."""
    caps = PROTOCOL_FAULTS.get(protocol)
    if caps is None:
        known = ", ".join(PROTOCOL_FAULTS)
        return f"{target} speaks {protocol}, which has no fault proxy (protocol faults exist for {known})"
    if fault.action not in caps.actions:
        can = ", ".join(f"{ACTION_BUILTINS[a]}()" for a in ProxyAction if a in caps.actions)
        return f"{ACTION_BUILTINS[fault.action]}() does not apply to {protocol} ({target}); {protocol} takes {can}"
    for name, _ in fault.matchers:
        if name not in caps.matchers:
            have = ", ".join(f"{m}=" for m in caps.matchers)
            return f"{protocol} has no {name}= matcher ({target}); its matchers are {have} and probability="
    for name in _answer_fields(fault):
        if name not in caps.answers:
            takes = ", ".join(f"{a}=" for a in caps.answers) or "none of status=, body=, sqlstate=, code="
            builtin = ACTION_BUILTINS[fault.action]
            return (
                f"{builtin}({name}=...) means nothing to {protocol} ({target}), so it would be ignored; "
                f"{protocol}'s {builtin}() takes {takes}"
            )
    return None


def _answer_fields(fault: ProxyFault) -> list[str]:
    """The answer values a fault sets (`body=` and `value=` both land in `body`; `value=None` in `nil`)."""
    out = [name for name in ("status", "sqlstate", "code", "message") if getattr(fault, name) is not None]
    if fault.headers:
        out.append("headers")
    if fault.body is not None:
        out.append("body")
    if fault.nil:
        out.append("value")
    return out
