"""One proxied connection, as a protocol codec sees it.

A codec is `async def serve(session)`. It reads the client's requests from `session.client`,
writes to the server through `session.server`, relays the server's replies back, and asks
`session.decide(method=..., path=...)` what to do with each request. Everything else (the rule
book, events, counters, warnings) is behind this object, so codecs know nothing of the runner.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from faultbox.proxy.rules import LiveRule, RuleBook, Verdict

# (type, fields) -> None: how a proxy puts an event in the test's trace.
EventSink = Callable[[str, dict[str, str]], None]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The interface a proxy stands in front of."""

    service: str
    interface: str
    protocol: str
    target_host: str
    target_port: int
    record: bool = False  # emit a `proxy_request` event for every request and its reply


class Stream:
    """One side of a connection: an asyncio reader and writer with byte counters."""

    __slots__ = ("bytes_read", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.bytes_read = 0

    async def read(self, n: int = 65536) -> bytes:
        data = await self.reader.read(n)
        self.bytes_read += len(data)
        return data

    async def readexactly(self, n: int) -> bytes:
        data = await self.reader.readexactly(n)
        self.bytes_read += n
        return data

    async def readuntil(self, sep: bytes) -> bytes:
        data = await self.reader.readuntil(sep)
        self.bytes_read += len(data)
        return data

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass

    def reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0), as a crashed peer or a dropped link would."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport = self.writer.transport
        try:
            transport.abort()
        except Exception:
            self.close()


class Session:
    def __init__(
        self,
        endpoint: Endpoint,
        conn_id: int,
        client: Stream,
        server: Stream,
        rules: RuleBook,
        emit: EventSink,
        warn: Callable[[str], None],
    ) -> None:
        self.endpoint = endpoint
        self.conn_id = conn_id
        self.client = client
        self.server = server
        self._rules = rules
        self._emit = emit
        self._warn = warn
        self.opened = time.monotonic()

    @property
    def faulting(self) -> bool:
        """Whether any rule is installed: a codec may skip decoding work while none is."""
        return self._rules.active

    @property
    def recording(self) -> bool:
        return self.endpoint.record

    def decide(self, **request: str | None) -> Verdict | None:
        """The verdict for one request, described by its matcher fields. Each rule that fires is
        recorded as a `proxy` event before this returns, so the trace has it before the client
        sees its effect."""
        verdict = self._rules.decide(request)
        if verdict is None:
            return None
        for lr in verdict.delays:
            self._fired(lr, request)
        if verdict.rule is not None:
            self._fired(verdict.rule, request)
        return verdict

    def _fired(self, lr: LiveRule, request: dict[str, str | None]) -> None:
        fault = lr.fault
        fields = {
            "action": fault.action.value,
            "protocol": self.endpoint.protocol,
            "interface": self.endpoint.interface,
            "conn_id": str(self.conn_id),
            "rule": fault.describe(),
        }
        for key, value in request.items():
            if value is not None:
                fields[key] = value[:200]
        for key in ("status", "sqlstate", "code", "message"):
            value = getattr(fault, key)
            if value is not None:
                fields[key] = str(value)[:200]
        if fault.delay:
            fields["delay_ms"] = f"{fault.delay * 1000:g}"
        if fault.label:
            fields["label"] = fault.label
        if lr.installed.assumption:
            fields["assumption"] = lr.installed.assumption
        self._emit("proxy", fields)

    def emit(self, type: str, fields: dict[str, str]) -> None:
        """Any other event of this connection (the codec's own, e.g. `proxy_request`)."""
        fields.setdefault("interface", self.endpoint.interface)
        fields.setdefault("protocol", self.endpoint.protocol)
        fields.setdefault("conn_id", str(self.conn_id))
        self._emit(type, fields)

    def record(self, fields: dict[str, Any]) -> None:
        """One request and its reply, when the interface records its traffic."""
        if self.endpoint.record:
            self.emit("proxy_request", {k: str(v)[:500] for k, v in fields.items() if v is not None})

    def warn(self, message: str) -> None:
        """A problem the test should hear about once (an undecodable stream relayed untouched)."""
        self._warn(message)

    async def pipe(self, src: Stream, dst: Stream) -> None:
        """Copy one direction until EOF, then half-close the other side."""
        while True:
            data = await src.read()
            if not data:
                break
            dst.write(data)
            await dst.drain()
        try:
            if dst.writer.can_write_eof():
                dst.writer.write_eof()
        except (OSError, RuntimeError):
            pass

    async def splice(self) -> None:
        """Relay both directions untouched until both are done (what a codec falls back to for a
        stream it cannot decode, and all the TCP codec does after its first chunk). The bytes go
        from one transport to the other in the event loop's callbacks, with no task in between;
        streams that cannot be taken over that way are piped."""
        if not (_can_take_over(self.client) and _can_take_over(self.server)):
            await asyncio.gather(self.pipe(self.client, self.server), self.pipe(self.server, self.client))
            return
        loop = asyncio.get_running_loop()
        done = (loop.create_future(), loop.create_future())
        up = _Relay(self.client, self.server, done[0])
        down = _Relay(self.server, self.client, done[1])
        up.peer, down.peer = down, up
        for relay in (up, down):
            relay.take_over()
        await asyncio.gather(*done)

    async def wait(self, verdict: Verdict) -> None:
        if verdict.delay > 0:
            await asyncio.sleep(verdict.delay)


def _can_take_over(stream: Stream) -> bool:
    # The stream's unread bytes live in a private buffer: if a Python version changes that, the
    # relay falls back to piping instead of losing them.
    return isinstance(vars(stream.reader).get("_buffer"), bytearray) and hasattr(
        stream.writer.transport, "set_protocol"
    )


class _Relay(asyncio.Protocol):
    """One direction of a splice: the source transport's protocol, writing what it receives into
    the destination transport. When the destination's buffer is full, the destination calls its
    own protocol (the other direction's relay) to pause writing, which pauses this source."""

    def __init__(self, src: Stream, dst: Stream, done: asyncio.Future[None]) -> None:
        self.src = src
        self.dst = dst
        self.done = done
        self.peer: _Relay | None = None
        self.src_transport = cast(asyncio.Transport, src.writer.transport)
        self.dst_transport = cast(asyncio.Transport, dst.writer.transport)

    def take_over(self) -> None:
        reader = self.src.reader
        buffered: bytearray = vars(reader)["_buffer"]  # what the stream had read and nobody consumed yet
        if buffered:
            self.dst_transport.write(bytes(buffered))
            buffered.clear()
        self.src_transport.set_protocol(self)
        if reader.at_eof():
            self.eof_received()
        elif self.src_transport.is_closing():
            self.connection_lost(None)
        else:
            self.src_transport.resume_reading()  # the stream may have paused it (a full buffer)

    def data_received(self, data: bytes) -> None:
        self.src.bytes_read += len(data)
        self.dst_transport.write(data)

    def eof_received(self) -> bool:
        if not self.dst_transport.is_closing() and self.dst_transport.can_write_eof():
            try:
                self.dst_transport.write_eof()
            except (OSError, RuntimeError):
                pass
        self._finish()
        return True  # keep the other direction open (a half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()
        if self.peer is not None:
            self.peer._finish()

    def pause_writing(self) -> None:
        # This relay's source transport is the peer's destination: its buffer is full.
        if self.peer is not None:
            self.peer.src_transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and not self.peer.src_transport.is_closing():
            self.peer.src_transport.resume_reading()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
