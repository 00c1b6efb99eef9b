"""TCP line mocks: every line a client sends is answered by the route whose prefix it starts with
(the longest such prefix), else by `default`, else not at all. The connection stays open for more
lines until the client closes it (the reference answers one line and closes)."""

from __future__ import annotations

import asyncio

from faultbox.model.mock import Answer, Dynamic, MockResponse
from faultbox.proxy.mock import MockContext, Track

_MAX_LINE = 1 << 20


def make_protocol(ctx: MockContext, track: Track) -> asyncio.Protocol:
    return LineMock(ctx, track)


class LineMock(asyncio.Protocol):
    def __init__(self, ctx: MockContext, track: Track) -> None:
        self.ctx = ctx
        self.track = track
        self.conn_id = ctx.next_conn()
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.track(transport, True)
        self.task = asyncio.ensure_future(self._answer_lines())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\n")
            if end < 0:
                break
            line, self.buffer = self.buffer[: end + 1], self.buffer[end + 1 :]
            self.lines.put_nowait(line)
        if len(self.buffer) > _MAX_LINE:  # a line that never ends: answer what came, as one line
            self.lines.put_nowait(self.buffer)
            self.buffer = b""

    def eof_received(self) -> bool:
        if self.buffer:
            self.lines.put_nowait(self.buffer)  # a last line without its newline
            self.buffer = b""
        self.lines.put_nowait(None)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.track(self.transport, False)  # type: ignore[arg-type]
        if self.task is not None:
            self.task.cancel()

    async def _answer_lines(self) -> None:
        assert self.transport is not None
        while True:
            line = await self.lines.get()
            if line is None:
                self.transport.close()
                return
            # Shielded as for HTTP: a line whose handler was called is recorded, client gone or not.
            response = await asyncio.shield(self._serial_answer(line))
            if response is not None and response.body and not self.transport.is_closing():
                self.transport.write(response.body)

    async def _serial_answer(self, line: bytes) -> MockResponse | None:
        async with self.ctx.serial:  # as for HTTP: a handler sees the earlier lines in the trace
            return await self._answer(line)

    async def _answer(self, line: bytes) -> MockResponse | None:
        """The answer to one line (None: no route and no default), recorded as a `mock` event."""
        answer, prefix = self._route(line)
        text = line.decode("utf-8", "replace")
        extra: dict[str, str] = {}
        response: MockResponse | None = answer if isinstance(answer, MockResponse) else None
        if isinstance(answer, Dynamic):
            req = {"line": text.rstrip("\r\n"), "body": text, "method": "", "path": "", "query": {}, "headers": {}}
            response = await self.ctx.call_dynamic(answer, req, extra)
            if "dynamic_error" in extra:
                response = MockResponse(0, b"ERR dynamic handler error\n", kind="bytes")
        fields = {
            "op": "recv",
            "kind": "mock",
            "interface": self.ctx.endpoint.interface,
            "protocol": "tcp",
            "line": text.rstrip("\r\n")[:500],
            "matched": "true" if prefix is not None else "false",
            "route": prefix.decode("utf-8", "replace") if prefix else "",
            "conn_id": str(self.conn_id),
            "req_size": str(len(line)),
            "resp_size": str(len(response.body) if response is not None else 0),
        }
        fields.update(extra)
        self.ctx.emit("mock", fields)
        return response

    def _route(self, line: bytes) -> tuple[Answer | None, bytes | None]:
        for prefix, answer in self.ctx.config.line_routes:  # longest prefix first
            if line.startswith(prefix):
                return answer, prefix
        return self.ctx.config.default, None
