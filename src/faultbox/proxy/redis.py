"""The Redis proxy: RESP2 and RESP3 relayed full duplex, requests matched on command and key.

Requests are forwarded as they arrive and replies relayed as the server sends them, as raw bytes:
the codec parses only to find where each request and reply ends and what command and key a
request names (`redis_resp`). `command=` is the upper-cased command name (the first word of a
subcommand container such as CLIENT SETNAME); `key=` is the first key of the commands in
`redis_resp.KEY_AT` (plus EVAL/FCALL with numkeys > 0 and XREAD's first stream). Every other
command carries no key, so `key="*"` never catches a handshake (HELLO, AUTH, SELECT, CLIENT).

Replies are matched to requests by a FIFO per connection: a run of server replies still due, or
a reply the proxy writes itself when its turn comes, so an injected reply for request N of a
pipeline reaches the client after the server's replies to requests 1..N-1. Messages that answer
no request flow straight through: RESP3 pushes, RESP2 pub/sub messages while subscribed, and
MONITOR's feed. `CLIENT REPLY OFF|SKIP` is followed: requests the server will not answer expect
no reply, and an injected reply for them is not written either (a faulted command after SKIP
sends a PING in its place: the server spends its SKIP on the next command it gets).

Faults: `error` answers the fault's message as the whole error line (default `ERR injected
fault`), `response` answers `value` as a bulk string (nil as `$-1`, or `_` once the connection said
HELLO 3; `+OK` when no value is given); the faulted command is not sent. Inside MULTI the
server's queue must agree with what the client is told: an injected error forwards an unknown
command in its place (the server then fails EXEC with EXECABORT, as after a real queue-time
error) and answers the error instead of the server's; an injected response forwards PING, relays
its QUEUED, and puts the value in place of PONG in EXEC's reply. A fault on EXEC or DISCARD sends
DISCARD so the transaction ends on both sides. `delay` holds the request (and those behind it on
the connection); `drop` resets both connections.

Limits: after an argument-less UNSUBSCRIBE, an injected reply pipelined right behind it may reach
the client before the server's later unsubscribe confirmations; in RESP2 subscribed mode a
message is relayed once it is complete (the others stream). CLIENT REPLY inside MULTI is taken
as an ordinary queued command. Inline commands are split on whitespace (no quoting). A stream
that is not RESP is relayed untouched after one warning; injected replies still owed on that
connection are then not written.
"""

from __future__ import annotations

import asyncio
import contextlib

from faultbox.model.proxy import ProxyAction
from faultbox.proxy.redis_fifo import (
    COUNTED,
    HOLD,
    INJECT,
    REPLIES,
    STATEFUL,
    SUBSCRIBE,
    UNSURE,
    ReplyBook,
)
from faultbox.proxy.redis_resp import ProtocolError, ReplyScanner, key_of, parse_head, skim_requests
from faultbox.proxy.session import Session, Stream

_READ = 1 << 16


class _Dropped(Exception):
    """A drop fault reset the connection."""


class _Conn(ReplyBook):
    """One proxied connection: its request side and its reply side, around the ReplyBook between."""

    # -- the request side ----------------------------------------------------------------------

    async def requests(self) -> None:
        s = self.s
        client, server = self.client, self.server
        buf = bytearray()
        skip_args = 0  # bulk arguments of the current request still to pass
        skip_bytes = 0  # bytes of the current argument's payload (and CRLF) still to pass
        dropping = False  # the current request is not forwarded: its bytes are left out
        while True:
            data = await client.read(_READ)
            if not data:
                return
            if self.raw:
                server.write(bytes(buf) + data if buf else data)
                buf = bytearray()
                await server.drain()
                continue
            faulting = s.faulting
            recording = s.recording
            # Requests can be merely counted while nothing is decided, recorded or special.
            plain = not (faulting or recording or self.in_multi or self.reply_off or self.skip_next)
            view: bytes | bytearray = data
            if buf:
                buf += data
                view = buf
            n = len(view)
            pos = 0
            fwd = 0  # start of the run of bytes to forward
            out: list[bytes | bytearray] = []
            try:
                while pos < n:
                    if plain and not (skip_bytes or skip_args or dropping):
                        pos, count = skim_requests(view, pos, n, STATEFUL)
                        if count:
                            self.expect_many(count)
                        if pos >= n:
                            break
                    if skip_bytes:
                        take = min(skip_bytes, n - pos)
                        pos += take
                        skip_bytes -= take
                        continue
                    if skip_args:
                        eol = view.find(b"\r\n", pos, n)
                        if eol < 0:
                            break
                        if view[pos] != 36:  # '$'
                            raise ProtocolError("request argument is not a bulk string")
                        size = int(view[pos + 1 : eol])
                        if size < 0:
                            raise ProtocolError("negative bulk length in a request")
                        pos = eol + 2
                        skip_bytes = size + 2
                        skip_args -= 1
                        continue
                    # A request starts here.
                    if dropping:
                        dropping = False
                        fwd = pos
                    head = parse_head(view, pos, n, faulting or recording)
                    if head is None:
                        break
                    end, skip_args, argv = head
                    name = argv[0].upper() if argv else b""
                    if not faulting:
                        self.expect(name, argv, skip_args)
                        plain = not (recording or self.in_multi or self.reply_off or self.skip_next)
                        pos = end
                        continue
                    command = name.decode("latin-1")
                    raw_key = key_of(name, argv)
                    key = raw_key.decode("utf-8", "replace") if raw_key is not None else None
                    verdict = s.decide(command=command, key=key) if name else None
                    if verdict is not None and verdict.delay > 0:
                        out.append(view[fwd:pos])
                        fwd = pos
                        self._send(out)
                        await server.drain()
                        await s.wait(verdict)
                    if verdict is None or verdict.rule is None:
                        self.expect(name, argv, skip_args)
                        pos = end
                        continue
                    fault = verdict.rule.fault
                    if recording:
                        s.record(
                            {
                                "method": command,
                                "key": key,
                                "status": "ok" if fault.action is ProxyAction.RESPOND else "error",
                                "duration_ms": round(verdict.delay * 1000, 3),
                                "fault": fault.action.value,
                            }
                        )
                    out.append(view[fwd:pos])
                    if fault.action is ProxyAction.DROP:
                        self._send(out)  # the requests before it were sent: they reach the server
                        await server.drain()
                        client.reset()
                        server.reset()
                        raise _Dropped
                    placeholder = self.inject(name, fault)
                    if placeholder is not None:
                        out.append(placeholder)
                    dropping = True
                    pos = end
            except ValueError as exc:  # ProtocolError, or digits that were not
                self._give_up(f"the client sent something that is not RESP ({exc})")
                out.append(view[pos if dropping else fwd :])
                self._send(out)
                buf = bytearray()
                await server.drain()
                continue
            if not dropping:
                out.append(view[fwd:pos])
            self._send(out)
            if pos < n:
                buf = bytearray(view[pos:])
            elif buf:
                buf = bytearray()
            await server.drain()

    def _send(self, out: list[bytes | bytearray]) -> None:
        _write(self.server, out)
        out.clear()

    def _give_up(self, why: str) -> None:
        if not self.raw:
            self.raw = True
            ep = self.s.endpoint
            self.s.warn(
                f"redis proxy of {ep.service}.{ep.interface}: {why}; the rest of the connection is relayed untouched"
            )

    # -- the reply side ------------------------------------------------------------------------

    async def replies(self) -> None:
        client, server = self.client, self.server
        scanner = ReplyScanner()
        fifo = self.fifo
        buf = bytearray()
        resume = 0  # where scanning resumes in buf
        start = -1  # start of the message held in buf until it is complete, or -1
        while True:
            data = await server.read(_READ)
            if not data:
                return
            if self.raw:
                client.write(bytes(buf) + data if buf else data)
                buf = bytearray()
                await client.drain()
                continue
            view: bytes | bytearray = data
            if buf:
                buf += data
                view = buf
            n = len(view)
            pos = resume
            relay = 0  # start of the bytes not yet relayed
            out: list[bytes | bytearray] = []
            try:
                while pos < n:
                    head = fifo[0] if fifo else None
                    if (
                        start < 0
                        and head is not None
                        and head.kind == REPLIES
                        and not (head.flag or head.rec or self.pubsub2 or self.monitor)
                        and (self.counted or scanner.idle)
                    ):
                        # The common case: plain replies to count, relayed as they come.
                        limit = head.n
                        pos, count = scanner.scan(view, pos, n, limit, False)
                        self.counted = True  # a message left incomplete answers this head too
                        if count == limit:
                            fifo.popleft()
                            if fifo and fifo[0].kind == INJECT:
                                out.append(view[relay:pos])
                                relay = pos
                                self.advance(out)
                            elif fifo and fifo[0].kind == SUBSCRIBE and not self.resp3:
                                self.pubsub2 = True
                            continue
                        head.n -= count
                        if pos >= n or not scanner.idle or view[pos] != 62:
                            break  # the bytes ran out
                        # A push is next: the general path below takes it.
                    if start < 0 and scanner.idle:
                        # A message starts. Held until complete: it may be swallowed or rewritten,
                        # or must be read to tell whether it answers a request. Else relayed as it comes.
                        how = self.classify(view, pos, n)
                        if how == UNSURE:
                            break
                        self.first = view[pos]
                        if how == HOLD:
                            start = pos
                        else:
                            self.counted = how == COUNTED
                    pos, done = scanner.scan(view, pos, n)
                    if not done:
                        break
                    if start >= 0:
                        out.append(view[relay:start])
                        self.held(view[start:pos], out)
                        relay = pos
                        start = -1
                    else:
                        if self.counted and fifo:
                            self.answered(self.first)
                        if fifo and fifo[0].kind == INJECT:
                            out.append(view[relay:pos])
                            relay = pos
                            self.advance(out)
            except ValueError as exc:  # ProtocolError, or digits that were not
                self._give_up(f"the server sent something that is not RESP ({exc})")
                out.append(view[relay:])
                _write(client, out)
                buf = bytearray()
                resume, start = 0, -1
                await client.drain()
                continue
            if start >= 0:
                out.append(view[relay:start])
                buf = bytearray(view[start:])
                resume = pos - start
                start = 0
                self.mid_reply = False
            else:
                out.append(view[relay:pos])
                if pos < n:
                    buf = bytearray(view[pos:])
                elif buf:
                    buf = bytearray()
                resume = 0
                self.mid_reply = not scanner.idle
            _write(client, out)
            await client.drain()


def _write(stream: Stream, out: list[bytes | bytearray]) -> None:
    data = bytes(out[0]) if len(out) == 1 else b"".join(out)
    if data:
        stream.write(data)


async def serve(session: Session) -> None:
    conn = _Conn(session)
    requests = asyncio.ensure_future(conn.requests())
    replies = asyncio.ensure_future(conn.replies())
    try:
        done, _ = await asyncio.wait((requests, replies), return_when=asyncio.FIRST_COMPLETED)
        if requests in done:
            try:
                requests.result()
            except _Dropped:
                return
            # The client is done sending: the server answers what it got, then closes.
            with contextlib.suppress(OSError, RuntimeError):
                if session.server.writer.can_write_eof():
                    session.server.writer.write_eof()
            await replies
        else:
            replies.result()  # the server closed: the connection is over
    finally:
        for task in (requests, replies):
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
