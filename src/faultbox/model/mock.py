"""Mock services: the routes a stand-in answers, the answers it gives, and which route a request takes.

A mock is data the runner hands to the proxy worker, which serves it (faultbox.proxy.mock). Every
value here pickles: a `dynamic(fn)` answer travels as the number of its handler, and the spec
function behind that number stays in the runner (`Dynamic.fn` is dropped on the way, see `wire`).

Route patterns are `"METHOD /path"`: METHOD is a method name or `*` (any); in the path, `*` is one
segment, `**` any number of segments (none included), and a segment may hold a glob (`order-*`).
The most specific route wins whatever the order they were written in: segment by segment from the
left, a literal beats a partial glob, which beats `*`, which beats `**` (and a pattern that ends
there beats one going on with `**`: `GET /a` answers /a, not `GET /a/**`); then a named method
beats `*`; then the route declared first.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from faultbox.errors import Code, FaultboxError

MOCK_PROTOCOLS = ("http", "http2", "tcp")
# The largest body a mock answers with, and the largest request body a dynamic handler is given:
# both cross the proxy worker's socket in one message.
MAX_BODY = 1 << 20
VALIDATE_MODES = ("off", "warn", "strict")

_LITERAL, _PARTIAL, _ONE, _ANY = 3, 2, 1, 0  # segment ranks: higher is more specific
_END = 0.5  # where a pattern ends: more specific than `**` going on, less than any segment
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


class RouteError(FaultboxError, ValueError):
    """A route pattern that does not parse; the message says what to write instead."""

    code = Code.SPEC_BAD_ARGUMENT


@dataclass(frozen=True, slots=True)
class MockResponse:
    """A fixed answer. HTTP: status, headers, body. TCP: `body` is written back as is (status unused)."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    kind: str = "http"  # "http" | "bytes"

    def describe(self) -> str:
        if self.kind == "bytes":
            return f"bytes_response({len(self.body)} bytes)"
        return f"response(status={self.status}, {len(self.body)} bytes)"


@dataclass(frozen=True, slots=True)
class Dynamic:
    """An answer computed per request by a spec function `fn(req) -> response`. `handler` numbers
    it within its mock; `fn` lives only in the runner."""

    handler: int
    name: str
    location: str = ""
    fn: Any = field(default=None, compare=False)


Answer = MockResponse | Dynamic


@dataclass(frozen=True, slots=True)
class RoutePattern:
    text: str  # as written: "GET /v1/charges/*"
    method: str  # upper case, or "*"
    segments: tuple[str, ...]  # path segments; "" for the root path
    ranks: tuple[int, ...]

    def matches(self, method: str, segments: tuple[str, ...]) -> bool:
        if self.method != "*" and self.method != method:
            return False
        return _match(self.segments, self.ranks, 0, segments, 0)

    @property
    def specificity(self) -> tuple[Any, ...]:
        # Segment by segment, then a named method over `*`. The end mark makes `/a` beat `/a/**` on /a.
        return ((*self.ranks, _END), self.method != "*")


@dataclass(frozen=True, slots=True)
class RequestCheck:
    """What an OpenAPI operation requires of a request, checked when the mock validates requests:
    `body_schema` is a JSON Schema (draft 2020-12) for a JSON body, or None."""

    operation: str
    required_query: tuple[str, ...] = ()
    required_headers: tuple[str, ...] = ()
    body_required: bool = False
    body_schema: Mapping[str, Any] | None = None
    media_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MockRoute:
    pattern: RoutePattern
    answer: Answer
    source: str = "routes"  # "routes" | "openapi" | "overrides"
    check: RequestCheck | None = None


@dataclass(frozen=True, slots=True)
class MockConfig:
    """How one mock interface answers. For TCP, route patterns are request-line prefixes."""

    protocol: str
    routes: tuple[MockRoute, ...] = ()
    default: Answer | None = None
    validate: str = "off"
    line_routes: tuple[tuple[bytes, Answer], ...] = ()  # TCP: (prefix, answer), longest prefix first

    def dynamics(self) -> dict[int, Dynamic]:
        found: dict[int, Dynamic] = {}
        answers: list[Answer | None] = [r.answer for r in self.routes]
        answers += [a for _, a in self.line_routes]
        answers.append(self.default)
        for answer in answers:
            if isinstance(answer, Dynamic):
                found[answer.handler] = answer
        return found

    def wire(self) -> MockConfig:
        """The same config without the spec functions (what the proxy worker gets)."""

        def strip(answer: Answer | None) -> Answer | None:
            return replace(answer, fn=None) if isinstance(answer, Dynamic) else answer

        return replace(
            self,
            routes=tuple(replace(r, answer=strip(r.answer)) for r in self.routes),  # type: ignore[arg-type]
            default=strip(self.default),
            line_routes=tuple((p, strip(a)) for p, a in self.line_routes),  # type: ignore[misc]
        )


def parse_route(text: str) -> RoutePattern:
    """`"METHOD /path"` as a pattern; RouteError says what is wrong with it."""
    method, sep, path = text.strip().partition(" ")
    path = path.strip()
    if not sep or not path:
        raise RouteError(f'route "{text}" needs a method and a path, e.g. "GET /health" or "* /v1/**"')
    if method != "*" and not (set(method) <= _TOKEN and method.isupper()):
        raise RouteError(f'route "{text}": "{method}" is not a method; write it in upper case (GET, POST) or *')
    if not path.startswith("/"):
        raise RouteError(f'route "{text}": the path must start with "/"')
    if any(c in path for c in " ?#"):
        raise RouteError(f'route "{text}": a route matches the path only; leave out spaces, "?" and "#"')
    segments = tuple(_param_to_glob(s) for s in path[1:].split("/"))
    ranks: list[int] = []
    for seg in segments:
        if seg == "**":
            ranks.append(_ANY)
        elif seg == "*":
            ranks.append(_ONE)
        elif "**" in seg:
            raise RouteError(f'route "{text}": "**" must be a whole segment (/a/**/b), not part of "{seg}"')
        elif any(c in seg for c in "*?["):
            ranks.append(_PARTIAL)
        else:
            ranks.append(_LITERAL)
    return RoutePattern(text.strip(), method, segments, tuple(ranks))


def _param_to_glob(segment: str) -> str:
    # OpenAPI path templates (/orders/{id}) are routes too: a parameter is one segment.
    if segment.startswith("{") and segment.endswith("}") and len(segment) > 2:
        return "*"
    return segment


def split_path(path: str) -> tuple[str, ...]:
    return tuple(path.split("?", 1)[0][1:].split("/")) if path.startswith("/") else (path,)


def _match(pat: tuple[str, ...], ranks: tuple[int, ...], i: int, segs: tuple[str, ...], j: int) -> bool:
    while i < len(pat):
        rank = ranks[i]
        if rank == _ANY:
            if i == len(pat) - 1:
                return True
            return any(_match(pat, ranks, i + 1, segs, k) for k in range(j, len(segs) + 1))
        if j >= len(segs):
            return False
        seg = segs[j]
        if rank == _LITERAL:
            if seg != pat[i]:
                return False
        elif rank == _ONE and not seg:
            return False  # `*` is one segment, not an empty one (/v1/charges/ is not /v1/charges/*)
        elif rank == _PARTIAL and not fnmatch.fnmatchcase(seg, pat[i]):
            return False
        i += 1
        j += 1
    return j == len(segs)


def order_routes(routes: Iterable[MockRoute]) -> tuple[MockRoute, ...]:
    """Routes from most to least specific (declaration order among equals): the first that matches
    a request is the one that answers it."""
    indexed = list(enumerate(routes))
    indexed.sort(key=lambda item: (item[1].pattern.specificity, -item[0]), reverse=True)
    return tuple(route for _, route in indexed)


def find_route(routes: tuple[MockRoute, ...], method: str, path: str) -> MockRoute | None:
    """The route answering `method path`; `routes` as ordered by order_routes()."""
    segments = split_path(path)
    for route in routes:
        if route.pattern.matches(method, segments):
            return route
    return None


def decode_json(data: bytes | str) -> Any:
    """A request body as JSON, or None when it is not JSON (or too deeply nested to decode)."""
    if not data:
        return None
    try:
        return json.loads(data)
    except Exception:  # ValueError, and RecursionError for a hostile nesting
        return None


def json_body(value: Any) -> bytes:
    """A JSON body, compact and with keys in the order written; TypeError for what JSON cannot hold."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def with_header(
    headers: Mapping[str, str] | Iterable[tuple[str, str]], name: str, value: str
) -> tuple[tuple[str, str], ...]:
    """Headers with `name` set to `value` unless the headers already set it (any case)."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if not any(k.lower() == name.lower() for k, _ in pairs):
        pairs.insert(0, (name, value))
    return tuple(pairs)
