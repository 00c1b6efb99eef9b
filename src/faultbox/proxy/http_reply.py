"""What the HTTP proxy (HTTP/1.1 and h2c alike) needs besides framing: the answer a `response()` or
`error()` rule gives, the path a `path=` matcher sees, and the hand-off to a plain relay."""

from __future__ import annotations

import json
from collections.abc import Iterable
from http import HTTPStatus

from faultbox.model.proxy import ProxyAction, ProxyFault
from faultbox.proxy.session import Session

# Headers the proxy computes itself for an injected answer: a rule's value for them would contradict the framing.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


def fault_reply(fault: ProxyFault) -> tuple[int, bytes, list[tuple[str, str]]]:
    """(status, body, headers) of the answer a respond/error rule gives, without framing headers.

    `error()` answers 500 and `{"error": "<message>"}` as JSON; `response()` answers 200 and the rule's
    body, labelled JSON when it parses as JSON and plain text otherwise. A rule's own headers win."""
    if fault.action is ProxyAction.ERROR:
        status = fault.status or 500
        text = fault.body if fault.body is not None else json.dumps({"error": fault.message or "injected fault"})
        ctype = "application/json"
    else:
        status = fault.status or 200
        text = fault.body or ""
        ctype = "application/json" if _is_json(text) else "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = []
    own = {name.lower() for name, _ in fault.headers}
    if "content-type" not in own:
        headers.append(("content-type", ctype))
    headers.extend((name, value) for name, value in fault.headers if name.lower() not in _FRAMING)
    return status, text.encode(), headers


def _is_json(text: str) -> bool:
    if not text or text[0] not in '{["-0123456789tfn':
        return False
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def h1_reply(fault: ProxyFault, *, head_only: bool, close: bool) -> tuple[int, bytes]:
    """The HTTP/1.1 bytes of an injected answer (headers only for a HEAD request)."""
    status, body, headers = fault_reply(fault)
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if status >= 200 and status not in (204, 304):
        lines.append(f"Content-Length: {len(body)}")
    else:
        body = b""
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return status, head if head_only else head + body


def request_path(target: str) -> str:
    """The path of a request target, without the query: origin form (`/a?b`), absolute form
    (`http://h/a`), or as is (`*`, a CONNECT authority)."""
    if target.startswith("/"):
        return target.split("?", 1)[0]
    scheme = target.find("://")
    if scheme > 0:
        rest = target[scheme + 3 :]
        slash = rest.find("/")
        return rest[slash:].split("?", 1)[0] if slash >= 0 else "/"
    return target


def untouched(session: Session, why: str) -> None:
    """Say once that this interface's traffic is relayed without being decoded."""
    ep = session.endpoint
    session.warn(f"{ep.protocol} proxy of {ep.service}.{ep.interface}: {why}; relaying the connection untouched")


_RECORDED_HEADERS = 24  # enough for any request a monitor reasons about; a flood stays bounded


def header_fields(pairs: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """A request's headers as recorded fields: `req_<name>` in lower case with `-` as `_`
    (`Idempotency-Key` is `req_idempotency_key`), values up to 200 characters; h2 pseudo-headers
    (`:path`...) are left out, as they are recorded as method and path."""
    out: dict[str, str] = {}
    for name, value in pairs:
        if name.startswith(b":") or len(out) >= _RECORDED_HEADERS:
            continue
        key = "req_" + name.decode("latin-1").strip().lower().replace("-", "_")
        out.setdefault(key, value.decode("latin-1").strip()[:200])
    return out


def head_header_pairs(head: bytes) -> list[tuple[bytes, bytes]]:
    """The header lines of an HTTP/1.x head that httptools has already validated."""
    pairs = []
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            pairs.append((name, value))
    return pairs
