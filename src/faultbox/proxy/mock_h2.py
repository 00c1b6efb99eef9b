"""h2c mocks (HTTP/2 with prior knowledge), handed over by faultbox.proxy.mock_http's sniffer.

Streams are independent: each request is answered when its stream ends, a fixed answer at once
and one that needs work (a dynamic handler, a validation) by a task, so a slow handler never holds
up the fixed answers on the connection. Request data is acknowledged as it arrives (the mock keeps
the whole body, up to _MAX_BODY); response bodies go out as the client's flow-control windows allow
and resume on its WINDOW_UPDATEs. A stream the client resets is forgotten, its pending answer
cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib

from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes

from faultbox.model.mock import MockResponse, MockRoute
from faultbox.proxy.http_h2_stream import new_connection
from faultbox.proxy.mock import MockContext, MockRequest

_MAX_BODY = 64 * 1024 * 1024
# Meaningful to a single HTTP/1.1 hop only; HTTP/2 forbids them. content-length is set from the body.
_NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "content-length"}
)
_TOO_LARGE = MockResponse(413, b"request body over 64 MiB\n", (("content-type", "text/plain; charset=utf-8"),))
_HeaderList = list[tuple[bytes, bytes]]
_HEAD_CACHE: dict[tuple[int, tuple[tuple[str, str], ...], int], _HeaderList] = {}


class _Stream:
    """One request and, once answered, what is left of its response body."""

    __slots__ = ("body", "body_size", "ended", "headers", "method", "out", "sent", "stream_id", "target", "task")

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.method = ""
        self.target = ""  # :path, query included
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.body_size = 0
        self.ended = False  # the client ended its request
        self.task: asyncio.Task[None] | None = None
        self.out: bytes | None = None  # the response body once its headers are sent
        self.sent = 0

    def header_missing(self, name: str) -> bool:
        return all(key != name for key, _ in self.headers)

    def request(self) -> MockRequest:
        path, _, query = self.target.partition("?")
        return MockRequest(self.method, path, query, self.headers, b"".join(self.body), "2")


class H2Mock(asyncio.Protocol):
    def __init__(self, ctx: MockContext, transport: asyncio.Transport) -> None:
        self.ctx = ctx
        self.transport = transport
        self.conn_id = ctx.next_conn()
        self.conn: H2Connection = new_connection(client_side=False)
        self.streams: dict[int, _Stream] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.paused = False
        self.eof = False  # the client sent its last byte: close once no answer is being computed
        self.closed = False

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            try:
                events = self.conn.receive_data(data)
            except ProtocolError:
                self._flush()  # h2 has queued a GOAWAY saying what was wrong
                self._close()
                return
            for event in events:
                self._handle(event)
                if self.closed:
                    return
            self._flush()
        except Exception:
            self._close()

    def eof_received(self) -> bool:
        self.eof = True
        if self.tasks and not self.closed:
            return True  # keep writing: the answers being computed still go out
        self._close()
        return False

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.closed:
            return
        try:
            self._send_all()
            self._flush()
        except Exception:
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for task in list(self.tasks):
            task.cancel()
        self.streams.clear()

    # -- what the client sent ------------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self._request(event)
        elif isinstance(event, DataReceived):
            self._data(event)
        elif isinstance(event, StreamEnded):
            self._ended(event)
        elif isinstance(event, StreamReset):
            self._reset(event)
        elif isinstance(event, WindowUpdated):
            if event.stream_id:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    self._send_body(stream)
            else:
                self._send_all()
        elif isinstance(event, RemoteSettingsChanged):
            changed = event.changed_settings
            if SettingCodes.INITIAL_WINDOW_SIZE in changed or SettingCodes.MAX_FRAME_SIZE in changed:
                self._send_all()
        elif isinstance(event, ConnectionTerminated):
            # After a GOAWAY h2 sends nothing more on this connection; what is in flight is lost.
            self._flush()
            self._close()

    def _request(self, event: RequestReceived) -> None:
        stream = _Stream(event.stream_id)
        authority = ""
        for name, value in event.headers:
            key = bytes(name).decode("latin-1")
            text = bytes(value).decode("latin-1")
            if key == ":method":
                stream.method = text
            elif key == ":path":
                stream.target = text
            elif key == ":authority":
                authority = text
            elif not key.startswith(":"):
                stream.headers.append((key.lower(), text))
        if authority and stream.header_missing("host"):
            # HTTP/2 clients name the host in :authority; handlers see the Host an HTTP/1.1 client sends.
            stream.headers.insert(0, ("host", authority))
        self.streams[event.stream_id] = stream

    def _data(self, event: DataReceived) -> None:
        if event.flow_controlled_length:
            # The body is kept in memory, so the client may send on at once.
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        stream = self.streams.get(event.stream_id)
        if stream is None or stream.out is not None or not event.data:
            return
        stream.body_size += len(event.data)
        if stream.body_size > _MAX_BODY:
            stream.body = []
            self._respond(stream, _TOO_LARGE, head_only=False)
            return
        stream.body.append(event.data)

    def _ended(self, event: StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        stream.ended = True
        if stream.out is not None:  # answered early (a body too large); sending ends the stream
            return
        request = stream.request()
        route, fixed = self.ctx.static_answer(request)
        if fixed is not None:
            self.ctx.record(self.conn_id, request, route, fixed)
            self._respond(stream, fixed, request.method == "HEAD")
            return
        task = asyncio.get_running_loop().create_task(self._work(stream, request, route))
        stream.task = task
        self.tasks.add(task)
        task.add_done_callback(self._work_done)

    def _reset(self, event: StreamReset) -> None:
        stream = self.streams.pop(event.stream_id, None)
        if stream is not None and stream.task is not None:
            stream.task.cancel()

    async def _work(self, stream: _Stream, request: MockRequest, route: MockRoute | None) -> None:
        try:
            response = await self.ctx.answer(self.conn_id, request, route)  # recorded there
            stream.task = None
            if not self.closed and self.streams.get(stream.stream_id) is stream:
                self._respond(stream, response, request.method == "HEAD")
                self._flush()
        except Exception:
            self._close()

    def _work_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if self.eof and not self.tasks:
            self._close()

    # -- what the mock sends -------------------------------------------------------------------

    def _respond(self, stream: _Stream, response: MockResponse, head_only: bool) -> None:
        status = response.status
        if not 200 <= status <= 999:
            # A final HTTP/2 response cannot carry a 1xx (or malformed) status: the stream fails instead.
            self._abandon(stream, ErrorCodes.INTERNAL_ERROR)
            return
        no_body = head_only or status in (204, 304)
        body = b"" if no_body else response.body
        try:
            self.conn.send_headers(stream.stream_id, _headers(response), end_stream=not body)
        except ProtocolError:
            self._abandon(stream, ErrorCodes.INTERNAL_ERROR)
            return
        stream.out = body
        self._send_body(stream)

    def _send_body(self, stream: _Stream) -> None:
        out = stream.out
        if out is None or self.streams.get(stream.stream_id) is not stream:
            return
        conn = self.conn
        sid = stream.stream_id
        try:
            if out:
                while stream.sent < len(out):
                    if self.paused:
                        return
                    room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                    if room <= 0:
                        return  # resumed by the client's WINDOW_UPDATE
                    conn.send_data(sid, out[stream.sent : stream.sent + room])
                    stream.sent += room
                conn.end_stream(sid)
            stream.sent = len(out)
            if not stream.ended:
                # Answered before the request was whole: ask the client to stop sending it (RFC 9113 8.1).
                conn.reset_stream(sid, ErrorCodes.NO_ERROR)
        except ProtocolError:
            self._abandon(stream, ErrorCodes.INTERNAL_ERROR)
            return
        self._forget(stream)

    def _send_all(self) -> None:
        for stream in list(self.streams.values()):
            if stream.out is not None:
                self._send_body(stream)

    def _abandon(self, stream: _Stream, code: ErrorCodes) -> None:
        with contextlib.suppress(ProtocolError):
            self.conn.reset_stream(stream.stream_id, code)
        self._forget(stream)

    def _forget(self, stream: _Stream) -> None:
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
        if stream.task is not None:
            stream.task.cancel()
            stream.task = None

    def _flush(self) -> None:
        if self.closed:
            return
        out = self.conn.data_to_send()
        if out:
            self.transport.write(out)

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()
        for task in list(self.tasks):
            if task is not asyncio.current_task():
                task.cancel()


def _headers(response: MockResponse) -> _HeaderList:
    """The header block of an answer. Those of fixed answers are cached: a static route costs one lookup."""
    no_length = response.status in (204, 304)
    key = (response.status, response.headers, -1 if no_length else len(response.body))
    cached = _HEAD_CACHE.get(key)
    if cached is not None:
        return cached
    block: _HeaderList = [(b":status", str(response.status).encode())]
    for name, value in response.headers:
        key_name = name.strip().lower()
        if not key_name or key_name.startswith(":") or key_name in _NOT_FORWARDED:
            continue
        block.append((key_name.encode("latin-1", "replace"), value.strip().encode("latin-1", "replace")))
    if not no_length:
        block.append((b"content-length", str(len(response.body)).encode()))
    if len(_HEAD_CACHE) < 4096:
        _HEAD_CACHE[key] = block
    return block
