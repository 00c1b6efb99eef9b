"""Mock services, served on the proxy worker's event loop with the proxies' protocol code.

A MockServer listens on the mock interface's own port (the one its consumers are told, behind the
interface's proxy like any service) and hands each connection to the protocol's server module
(MOCK_SERVERS). What is common to every HTTP version lives here: the route a request takes, the
request check of an OpenAPI route, the call of a `dynamic(fn)` answer (the function lives in the
runner: `Caller` asks it over the worker's socket), and the `mock` event each request leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from faultbox.model.mock import (
    MAX_BODY,
    Dynamic,
    MockConfig,
    MockResponse,
    MockRoute,
    decode_json,
    find_route,
    order_routes,
)
from faultbox.proxy.session import Endpoint, EventSink

# Protocol -> module with `make_protocol(ctx, track) -> asyncio.Protocol` (one per connection;
# `track(transport, opened)` lets the server cut every connection when it stops).
MOCK_SERVERS: dict[str, str] = {
    "http": "faultbox.proxy.mock_http",
    "http2": "faultbox.proxy.mock_http",
    "tcp": "faultbox.proxy.mock_tcp",
}

# How long a `dynamic` handler may run: the runner stops it then and fails the test. The worker
# waits a little longer, so that the runner's verdict (with the handler's line) comes first.
DYNAMIC_TIMEOUT = 10.0
_CALL_TIMEOUT = DYNAMIC_TIMEOUT + 5.0
_CLOSE_TIMEOUT = 5.0
_BODY_FIELD = 2048  # request body text kept in the event
_DATA_FIELD = 64 * 1024  # a JSON body up to this size is the event's data
FULL_BODY = "_json_body"
_RECORDED_HEADERS = 24


# (transport, opened): what a mock's connection tells its server, so that stop() can cut them all.
Track = Callable[[asyncio.BaseTransport, bool], None]

# (handler number, request dict) -> ("ok", MockResponse) | ("error", message)
Caller = Callable[[int, dict[str, Any]], Awaitable[tuple[str, Any]]]


class Validator(Protocol):
    def __call__(self, route: MockRoute, request: MockRequest) -> str | None: ...


@dataclass(slots=True)
class MockRequest:
    """One HTTP request as a mock sees it (any HTTP version)."""

    method: str
    path: str  # without the query
    query: str = ""  # the raw query string
    headers: list[tuple[str, str]] = field(default_factory=list)  # names in lower case, in order
    body: bytes = b""
    version: str = "1.1"

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def query_dict(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        out: dict[str, str] = {}
        for key, value in parse_qsl(self.query, keep_blank_values=True):
            out.setdefault(key, value)
        return out

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json_value(self) -> Any:
        return decode_json(self.body)

    def for_handler(self) -> dict[str, Any]:
        """What `fn(req)` of a dynamic answer receives (plain data: it crosses a socket)."""
        headers: dict[str, str] = {}
        for key, value in self.headers:
            headers.setdefault(key, value)
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query_dict(),
            "headers": headers,
            "body": self.text(),  # the runner adds "data", the body decoded: the body crosses once
        }


NOT_FOUND = MockResponse(404, b"not found\n", (("content-type", "text/plain; charset=utf-8"),))


def _error(status: int, error: str, detail: str) -> MockResponse:
    body = json.dumps({"error": error, "detail": detail}).encode()
    return MockResponse(status, body, (("content-type", "application/json"),))


class MockContext:
    """What a mock's protocol module needs of the rest: its config, the event sink, the caller."""

    def __init__(self, endpoint: Endpoint, config: MockConfig, emit: EventSink, call: Caller) -> None:
        self.endpoint = endpoint
        self.config = config
        self.routes = order_routes(config.routes)
        self.emit = emit
        self.call = call
        self._validator: Validator | None = None
        self.conn_ids = 0
        self.serial = asyncio.Lock()  # see answer()

    def next_conn(self) -> int:
        self.conn_ids += 1
        return self.conn_ids

    # -- HTTP ----------------------------------------------------------------------------------

    def static_answer(self, request: MockRequest) -> tuple[MockRoute | None, MockResponse | None]:
        """The route and, when no work is needed (no handler to call, nothing to validate), the answer."""
        route = find_route(self.routes, request.method, request.path)
        if route is None and request.method == "HEAD":  # HEAD is answered as GET, without the body
            route = find_route(self.routes, "GET", request.path)
        answer = route.answer if route is not None else self.config.default
        if answer is None:
            return route, NOT_FOUND
        if isinstance(answer, MockResponse) and (route is None or route.check is None or self.config.validate == "off"):
            return route, answer
        return route, None

    async def answer(self, conn_id: int, request: MockRequest, route: MockRoute | None) -> MockResponse:
        """Answer a request that needs work (a validation, a handler call) and record it. Never raises.

        The work goes on if the client goes away meanwhile (the connection's task is cancelled):
        a handler that was called is in the trace. The requests of one mock whose answer is a
        handler's are answered one at a time, each recorded before the next handler is called: a
        handler sees every earlier request of its mock in the trace."""
        return await asyncio.shield(self._answer_and_record(conn_id, request, route))

    async def _answer_and_record(self, conn_id: int, request: MockRequest, route: MockRoute | None) -> MockResponse:
        extra: dict[str, str] = {}
        try:
            refused = self._check(request, route, extra)  # outside the lock: it calls no handler
            if refused is not None:
                self.record(conn_id, request, route, refused, extra)
                return refused
            answer = route.answer if route is not None else self.config.default
            if isinstance(answer, Dynamic):
                async with self.serial:
                    response = await self.call_dynamic(answer, request, extra)
                    self.record(conn_id, request, route, response, extra)
                    return response
            response = answer if answer is not None else NOT_FOUND
        except Exception as exc:  # a bug here must not leave the client waiting
            extra["mock_error"] = f"{type(exc).__name__}: {exc}"[:500]
            response = _error(500, "mock error", extra["mock_error"])
        self.record(conn_id, request, route, response, extra)
        return response

    def _check(self, request: MockRequest, route: MockRoute | None, extra: dict[str, str]) -> MockResponse | None:
        """The 400 of a request its OpenAPI operation refuses (validate="strict"), else None."""
        if route is None or route.check is None or self.config.validate == "off":
            return None
        problem = self.validate(route, request)
        if problem is None:
            return None
        extra["validate"] = self.config.validate
        extra["validate_error"] = problem[:500]
        if self.config.validate != "strict":
            return None
        return MockResponse(
            400,
            json.dumps({"error": f"request validation failed: {problem}"}).encode(),
            (("content-type", "application/json"),),
        )

    async def call_dynamic(
        self, answer: Dynamic, request: MockRequest | dict[str, Any], extra: dict[str, str]
    ) -> MockResponse:
        """A handler's answer, or a 500 (413 for a body too big to hand over) with `dynamic_error` set."""
        req = request.for_handler() if isinstance(request, MockRequest) else request
        size = len(req.get("body", ""))
        if size > MAX_BODY:
            extra["dynamic_error"] = (
                f"a request body of {size} bytes is more than a dynamic handler is given ({MAX_BODY} bytes)"
            )
            return _error(413, "request body too large for a dynamic handler", extra["dynamic_error"])
        try:
            kind, value = await asyncio.wait_for(self.call(answer.handler, req), _CALL_TIMEOUT)
        except TimeoutError:
            kind, value = "error", f"dynamic handler {answer.name} did not return within {_CALL_TIMEOUT:g}s"
        except Exception as exc:  # the runner is gone: say so to the client, keep serving
            kind, value = "error", f"dynamic handler {answer.name} could not be called: {exc}"
        if kind == "ok" and isinstance(value, MockResponse):
            return value
        extra["dynamic_error"] = str(value)[:500]
        return _error(500, "dynamic handler error", extra["dynamic_error"])

    def validate(self, route: MockRoute, request: MockRequest) -> str | None:
        if self._validator is None:
            from faultbox.proxy.mock_validate import validate

            self._validator = validate
        return self._validator(route, request)

    def record(
        self,
        conn_id: int,
        request: MockRequest,
        route: MockRoute | None,
        response: MockResponse,
        extra: dict[str, str] | None = None,
    ) -> None:
        """The `mock` event of one request, emitted before its answer is written."""
        op = f"{request.method} {request.path}"
        fields = {
            "op": op,
            "kind": "mock",
            "interface": self.endpoint.interface,
            "protocol": self.endpoint.protocol,
            "method": request.method,
            "path": request.path,
            "status": str(response.status),
            "route": route.pattern.text if route is not None else "",
            "conn_id": str(conn_id),
            "req_size": str(len(request.body)),
            "body_size": str(len(response.body)),
        }
        if request.query:
            fields["query"] = request.query[:500]
        if request.body:
            text = request.text()
            fields["body"] = text[:_BODY_FIELD]
            if _BODY_FIELD < len(text) <= _DATA_FIELD and text.lstrip()[:1] in ("{", "["):
                fields[FULL_BODY] = text  # for the event's data; the runner takes it out of the fields
        for key, value in request.headers[:_RECORDED_HEADERS]:
            if not key.startswith(":"):
                fields.setdefault("req_" + key.replace("-", "_"), value[:200])
        if extra:
            fields.update(extra)
        self.emit("mock", fields)


class MockServer:
    """One mock interface: a listening socket on the interface's own port."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ctx: MockContext) -> None:
        self.loop = loop
        self.ctx = ctx
        self.host = ctx.endpoint.target_host
        self.port = ctx.endpoint.target_port
        self._server: asyncio.AbstractServer | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        factory: Callable[[MockContext, Track], asyncio.Protocol]
        factory = importlib.import_module(MOCK_SERVERS[self.ctx.endpoint.protocol]).make_protocol
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.listen(512)
        sock.setblocking(False)
        self._server = await self.loop.create_server(lambda: factory(self.ctx, self._track), sock=sock)
        self.host, self.port = sock.getsockname()[:2]

    def _track(self, transport: asyncio.BaseTransport, opened: bool) -> None:
        if opened:
            self._transports.add(transport)
        else:
            self._transports.discard(transport)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for transport in list(self._transports):
            with contextlib.suppress(Exception):
                transport.abort()  # type: ignore[attr-defined]
        self._transports.clear()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), _CLOSE_TIMEOUT)
