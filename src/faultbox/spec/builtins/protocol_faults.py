"""Protocol faults: response(), error(), drop(), duplicate() and delay(delay=...), and binding them
to interfaces (`fault(db.main, error(query="INSERT*", sqlstate="40001"), run=fn)`).

The constructors only build ProxyFault values; a fault is checked against an interface's protocol
when it is bound to one (an assumption at load, fault() when it runs), so `error(sqlstate=...)` on
an HTTP interface, or a `path=` matcher on Redis, is refused with what the protocol has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from faultbox.model.fault import ProbabilityError, parse_probability
from faultbox.model.proxy import (
    PROTOCOL_FAULTS,
    ProxyAction,
    ProxyFault,
    ProxyRule,
    check_fault_for,
)
from faultbox.model.service import Interface, Service
from faultbox.spec.args import ArgError, register_type_name, type_name
from faultbox.spec.builtins import builtin
from faultbox.spec.registry import SpecBuilder
from faultbox.spec.values import InterfaceRef, ServiceValue

register_type_name(ProxyFault, "protocol_fault")

_SQLSTATE = re.compile(r"^[0-9A-Z]{5}$")
_UNSET = "\x00unset"  # response(value=None) means nil: "not given" needs a value of its own

MATCHER_PARAMS = (
    "method: str? = None, op: str? = None, path: str? = None, query: str? = None, command: str? = None, "
    "key: str? = None, topic: str? = None, probability: any = 1.0, times: int = 0, label: str = ''"
)


def matchers_of(what: str, given: Mapping[str, str | None]) -> tuple[tuple[str, str], ...]:
    """The matcher keywords given to a protocol fault builtin, `op=` folded into `method=`."""
    method, op = given.get("method"), given.get("op")
    if method is not None and op is not None:
        raise ArgError(f"{what}: method= and op= are the same matcher; give one")
    out: list[tuple[str, str]] = []
    for name in ("method", "path", "query", "command", "key", "topic"):
        value = op if name == "method" and op is not None else given.get(name)
        if value is None:
            continue
        if not value:
            raise ArgError(f'{what}: {name}="" matches nothing', f'leave {name}= out to match any, or use "*"')
        out.append((name, value))
    return tuple(out)


def probability_of(what: str, value: Any) -> float:
    try:
        return parse_probability(value)
    except ProbabilityError as exc:
        raise ArgError(f"{what}: {exc}") from None


def _headers(what: str, headers: Mapping[Any, Any]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for k, v in headers.items():
        if not isinstance(k, str) or not isinstance(v, (str, int)):
            raise ArgError(f"{what}: headers must map strings to strings, got {type_name(k)}: {type_name(v)}")
        out.append((k, str(v)))
    return tuple(out)


def _body(what: str, value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list, int, float, bool)):
        import json

        from faultbox._util.frozen import thaw

        return json.dumps(thaw(value), separators=(",", ":"))
    raise ArgError(f"{what}: body must be a string (or a dict/list, sent as JSON), got {type_name(value)}")


@builtin(
    "response",
    f"*, status: int? = None, body: any = None, value: any = {_UNSET!r}, headers: dict = {{}}, "
    f"delay: duration? = None, {MATCHER_PARAMS}",
)
def response(
    builder: SpecBuilder,
    status: int | None,
    body: Any,
    value: Any,
    headers: dict[Any, Any],
    delay: float | None,
    probability: Any,
    times: int,
    label: str,
    **matchers: str | None,
) -> ProxyFault:
    """Answer a matched request with a reply of the spec's choosing instead of forwarding it."""
    what = "response()"
    if body is not None and value != _UNSET:
        raise ArgError(f"{what}: body= and value= are the same reply; give one")
    nil = value is None
    text = _body(what, body if value == _UNSET else (None if nil else value))
    return _fault(
        ProxyAction.RESPOND,
        what,
        matchers,
        probability,
        times,
        label,
        status=status,
        body=text,
        headers=_headers(what, headers),
        nil=nil,
        delay=delay or 0.0,
    )


@builtin(
    "error",
    "*, status: int? = None, message: str? = None, body: any = None, sqlstate: str? = None, code: any = None, "
    f"headers: dict = {{}}, delay: duration? = None, {MATCHER_PARAMS}",
)
def error(
    builder: SpecBuilder,
    status: int | None,
    message: str | None,
    body: Any,
    sqlstate: str | None,
    code: Any,
    headers: dict[Any, Any],
    delay: float | None,
    probability: Any,
    times: int,
    label: str,
    **matchers: str | None,
) -> ProxyFault:
    """Answer a matched request with the protocol's error: an HTTP status, a PostgreSQL
    ErrorResponse with a SQLSTATE, a Redis error line, a Kafka error code."""
    what = "error()"
    if sqlstate is not None and not _SQLSTATE.match(sqlstate):
        raise ArgError(
            f'{what}: sqlstate="{sqlstate}" is not a SQLSTATE (five digits or capital letters)',
            'e.g. sqlstate="40001" (serialization_failure), "40P01" (deadlock), "23505" (unique_violation)',
        )
    if sqlstate is not None and sqlstate.startswith(("00", "01", "02")):
        raise ArgError(f'{what}: sqlstate="{sqlstate}" is a success or warning class, not an error')
    if (code is not None and not isinstance(code, (str, int))) or isinstance(code, bool):
        raise ArgError(f"{what}: code= is a Kafka error code: a name or a number, got {type_name(code)}")
    if status is not None and not 100 <= status <= 599:
        raise ArgError(f"{what}: status={status} is not an HTTP status (100..599)")
    return _fault(
        ProxyAction.ERROR,
        what,
        matchers,
        probability,
        times,
        label,
        status=status,
        message=message,
        body=_body(what, body),
        sqlstate=sqlstate,
        code=None if code is None else str(code),
        headers=_headers(what, headers),
        delay=delay or 0.0,
    )


@builtin("drop", f"*, {MATCHER_PARAMS}")
def drop(builder: SpecBuilder, probability: Any, times: int, label: str, **matchers: str | None) -> ProxyFault:
    """Cut the connection (a TCP reset) when a request matches."""
    return _fault(ProxyAction.DROP, "drop()", matchers, probability, times, label)


@builtin("duplicate", "*, topic: str? = None, probability: any = 1.0, times: int = 0, label: str = ''")
def duplicate(builder: SpecBuilder, topic: str | None, probability: Any, times: int, label: str) -> ProxyFault:
    """Deliver a matched Kafka produce twice (the client sees one acknowledgement)."""
    return _fault(ProxyAction.DUPLICATE, "duplicate()", {"topic": topic}, probability, times, label)


def proxy_delay(
    duration: float, probability: Any, times: int, label: str, matchers: Mapping[str, str | None]
) -> ProxyFault:
    """delay(<matchers>, delay="500ms"): the protocol form of delay()."""
    if duration <= 0:
        raise ArgError("delay(): the delay must be positive")
    return _fault(ProxyAction.DELAY, "delay()", matchers, probability, times, label, delay=duration)


def _fault(
    action: ProxyAction,
    what: str,
    matchers: Mapping[str, str | None],
    probability: Any,
    times: int,
    label: str,
    **answer: Any,
) -> ProxyFault:
    """The part every protocol fault builtin shares: matchers, probability, times and label checked."""
    if times < 0:
        raise ArgError(f"{what}: times={times} is negative", "times=0 (the default) fires on every match")
    return ProxyFault(
        action, matchers_of(what, matchers), probability_of(what, probability), times=times, label=label, **answer
    )


# -- binding to interfaces ---------------------------------------------------------------------


def interfaces_of(target: Any, what: str) -> list[tuple[Service, Interface]]:
    """The interfaces a protocol fault's target names: `svc.iface`, a service with one interface,
    or a list of those."""
    if isinstance(target, InterfaceRef):
        return [(target.owner, target.model)]
    if isinstance(target, ServiceValue):
        svc = target.model
        if len(svc.interfaces) == 1:
            return [(svc, svc.interfaces[0])]
        names = ", ".join(f"{svc.name}.{i.name}" for i in svc.interfaces) or "none"
        raise ArgError(
            f"{what}: protocol faults apply to an interface, and {svc.name} has "
            f"{len(svc.interfaces)} (its interfaces: {names})",
            f"name the interface: fault({svc.name}.<interface>, ...)",
        )
    if isinstance(target, (list, tuple)):
        out: list[tuple[Service, Interface]] = []
        for item in target:
            out.extend(interfaces_of(item, what))
        return out
    raise ArgError(f"{what}: a protocol fault's target is an interface (svc.iface), got {type_name(target)}")


def bind(target: Any, faults: Sequence[Any], what: str) -> list[ProxyRule]:
    """Protocol faults on the target's interfaces, each checked against the interface's protocol."""
    for i, f in enumerate(faults):
        if not isinstance(f, ProxyFault):
            raise ArgError(
                f"{what}: rule {i + 1} must be a protocol fault (response, error, delay(delay=...), drop, "
                f"duplicate), got {type_name(f)}",
                'syscall faults are keywords: write=deny("EIO")',
            )
    rules: list[ProxyRule] = []
    for svc, iface in interfaces_of(target, what):
        name = f"{svc.name}.{iface.name}"
        if not iface.proxy:
            raise ArgError(
                f"{what}: {name} was declared with proxy=False, so no proxy stands in front of it",
                f"remove proxy=False from {name}'s interface(...) to fault its protocol",
            )
        for f in faults:
            problem = check_fault_for(f, iface.protocol, name)
            if problem is not None:
                raise ArgError(f"{what}: {problem}", _hint(f, iface.protocol))
            rules.append(ProxyRule(svc.name, iface.name, iface.protocol, f))
    return rules


def _hint(fault: ProxyFault, protocol: str) -> str | None:
    caps = PROTOCOL_FAULTS.get(protocol)
    if caps is None:
        return "use syscall faults on the service (write=, connect=, ...) for this interface"
    examples = {
        "http": 'error(path="/v1/charges", status=503)',
        "http2": 'error(path="/v1/charges", status=503)',
        "postgres": 'error(query="INSERT INTO orders*", sqlstate="40001")',
        "redis": 'error(command="SET", message="READONLY replica")',
        "kafka": 'error(topic="orders", code="NOT_LEADER_OR_FOLLOWER")',
        "tcp": 'drop(method="STOCK*")',
    }
    return f"e.g. {examples[protocol]}" if protocol in examples else None
