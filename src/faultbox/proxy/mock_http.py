"""HTTP mocks: HTTP/1.x parsed with httptools, and h2c (prior knowledge) on the same port.

The first bytes of a connection choose, as in the HTTP proxy. HTTP/1.x requests are answered in
order (pipelined requests included) with keep-alive, chunked request bodies, `Expect:
100-continue`, HEAD, and `Connection: close`. A request whose answer is fixed is answered inside
the parser's callback; one that needs work (a dynamic handler, a validation) is answered by a task,
and the answers behind it wait for it so that the order holds.
"""

from __future__ import annotations

import asyncio
from collections import deque
from http import HTTPStatus

import httptools

from faultbox.model.mock import MockResponse, MockRoute
from faultbox.proxy.http_h2 import PREFACE
from faultbox.proxy.mock import MockContext, MockRequest, Track

_MAX_BODY = 64 * 1024 * 1024
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_HEAD_CACHE: dict[tuple[int, tuple[tuple[str, str], ...], int, bool], bytes] = {}


def make_protocol(ctx: MockContext, track: Track) -> asyncio.Protocol:
    return _Sniff(ctx, track)


class _Sniff(asyncio.Protocol):
    """Reads until it can tell HTTP/2's preface from HTTP/1.x, then hands the connection over."""

    def __init__(self, ctx: MockContext, track: Track) -> None:
        self.ctx = ctx
        self.track = track
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.inner: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.track(transport, True)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)
            return
        self.buffer += data
        if len(self.buffer) < len(PREFACE) and PREFACE.startswith(self.buffer):
            return  # could still be the preface
        assert self.transport is not None
        if self.buffer.startswith(PREFACE):
            from faultbox.proxy.mock_h2 import H2Mock

            self.inner = H2Mock(self.ctx, self.transport)
        else:
            self.inner = H1Mock(self.ctx, self.transport)
        self.inner.connection_made(self.transport)
        data, self.buffer = self.buffer, b""
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.inner is not None:
            return self.inner.eof_received()
        return None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.track(self.transport, False)  # type: ignore[arg-type]
        if self.inner is not None:
            self.inner.connection_lost(exc)


class _Pending:
    """An answer being computed; the answers queued behind it are written after it."""

    __slots__ = ("data", "done")

    def __init__(self) -> None:
        self.data = b""
        self.done = False


class H1Mock(asyncio.Protocol):
    def __init__(self, ctx: MockContext, transport: asyncio.Transport) -> None:
        self.ctx = ctx
        self.transport = transport
        self.conn_id = ctx.next_conn()
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.body_size = 0
        self.queue: deque[_Pending] = deque()  # answers not written yet, in request order
        self.closing = False
        self.tasks: set[asyncio.Task[None]] = set()

    # -- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []
        self.body_size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1").strip()))

    def on_headers_complete(self) -> None:
        if self.parser.should_upgrade():
            return
        for key, value in self.headers:
            if key == "expect" and value.lower() == "100-continue" and not self.queue:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > _MAX_BODY:
            raise httptools.HttpParserError("request body over 64 MiB")
        self.body.append(body)

    def on_message_complete(self) -> None:
        parsed = httptools.parse_url(self.url) if self.url.startswith(b"/") else None
        path = parsed.path.decode("latin-1") if parsed is not None else self.url.decode("latin-1")
        query = parsed.query.decode("latin-1") if parsed is not None and parsed.query else ""
        method = self.parser.get_method().decode("latin-1")
        request = MockRequest(method, path, query, self.headers, b"".join(self.body), self.parser.get_http_version())
        keep = self.parser.should_keep_alive()
        route, fixed = self.ctx.static_answer(request)
        if fixed is not None:
            self.ctx.record(self.conn_id, request, route, fixed)
            self._answer(_encode(fixed, method == "HEAD", keep), not keep)
            return
        pending = _Pending()
        self.queue.append(pending)
        task = asyncio.ensure_future(self._work(request, route, pending, keep))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- the connection ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._answer(_encode(_text(501, "upgrades are not supported by this mock\n"), False, False), True)
        except httptools.HttpParserError as exc:
            self._answer(_encode(_text(400, f"bad request: {exc}\n"), False, False), True)

    def eof_received(self) -> bool:
        # The client is done sending; answers still being computed are written before closing.
        if not self.queue:
            self.transport.close()
            return False
        self.closing = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        for task in list(self.tasks):
            task.cancel()

    async def _work(self, request: MockRequest, route: MockRoute | None, pending: _Pending, keep: bool) -> None:
        response = await self.ctx.answer(self.conn_id, request, route)
        pending.data = _encode(response, request.method == "HEAD", keep)
        pending.done = True
        if not keep:
            self.closing = True
        self._flush()

    def _answer(self, data: bytes, close: bool) -> None:
        if self.queue:  # behind an answer still being computed
            pending = _Pending()
            pending.data, pending.done = data, True
            self.queue.append(pending)
            if close:
                self.closing = True
            return
        self.transport.write(data)
        if close:
            self.closing = True
            self.transport.close()

    def _flush(self) -> None:
        while self.queue and self.queue[0].done:
            self.transport.write(self.queue.popleft().data)
        if self.closing and not self.queue:
            self.transport.close()


def _text(status: int, text: str) -> MockResponse:
    return MockResponse(status, text.encode(), (("content-type", "text/plain; charset=utf-8"),))


def _encode(response: MockResponse, head_only: bool, keep_alive: bool) -> bytes:
    """The bytes of an answer. Heads of fixed answers are cached: a static route costs one lookup."""
    key = (response.status, response.headers, len(response.body), keep_alive)
    head = _HEAD_CACHE.get(key)
    if head is None:
        head = _head(response, keep_alive)
        if len(_HEAD_CACHE) < 4096:
            _HEAD_CACHE[key] = head
    if head_only or response.status in (204, 304) or response.status < 200:
        return head
    return head + response.body


def _head(response: MockResponse, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}"]
    for name, value in response.headers:
        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
            lines.append(f"{name}: {value}")
    if response.status >= 200 and response.status not in (204, 304):
        lines.append(f"content-length: {len(response.body)}")
    if not keep_alive:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
