"""HTTP/1.x half of the HTTP proxy (see faultbox.proxy.http for what it does and its limits).

Two tasks per connection, one per direction. Each frames the messages passing through it (bodies are
counted by Content-Length or walked chunk by chunk) and relays the bytes as they arrived, before
framing them unless a request head must wait for a decision. While rules are installed (or the
interface records) request heads are parsed with httptools and held back until decided; otherwise
a plain request or response is only framed, which costs a few byte searches. A queue of exchanges,
in request order, pairs responses with requests (a HEAD, a CONNECT, an upgrade) and gives an
injected answer its place among the server's answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

import httptools

from faultbox.model.proxy import ProxyAction
from faultbox.proxy.http_frame import (
    CRLF2,
    MAX_HEAD,
    QUIET,
    Chunks,
    Dropped,
    Garbled,
    lengths,
    probe,
    response_head,
    to_int,
)
from faultbox.proxy.http_reply import h1_reply, head_header_pairs, header_fields, request_path, untouched
from faultbox.proxy.session import Session, Stream

_READ = 1 << 16


class _Closed(Exception):
    """An injected answer closed the connection: nothing more is relayed."""


class _Exchange:
    """One request, from its head to the end of its answer."""

    __slots__ = ("close", "connect", "head", "headers", "inject", "method", "status", "t0", "target", "upgrade")

    def __init__(self, method: str, target: bytes, upgrade: bool) -> None:
        self.method = method
        self.target = target
        self.upgrade = upgrade
        self.head = method == "HEAD"
        self.connect = method == "CONNECT"
        self.t0 = 0.0  # set when the interface records
        self.inject: bytes | None = None  # the proxy's own answer, when a rule answered it
        self.status = 0
        self.close = False
        self.headers: dict[str, str] = {}  # recorded request headers (req_<name>), when recording

    @property
    def path(self) -> str:
        return request_path(self.target.decode("latin-1"))


# What a plain request framed without decoding is queued as: nothing about it but its framing is read.
_PLAIN = _Exchange("GET", b"", False)


class H1:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.queue: deque[_Exchange] = deque()
        self.injected = 0  # injected answers waiting in the queue behind forwarded requests
        self.resp_mid = False  # the server side is inside a response (or an unsolicited one)
        self.upgrade: asyncio.Future[bool] | None = None  # an upgrade/CONNECT waiting for its answer
        self.raw_req = False
        self.raw_resp = False
        self.status = 0  # of the response being relayed, for the record

    async def run(self, first: bytes, server_first: asyncio.Future[bytes]) -> None:
        requests = asyncio.ensure_future(self._requests(first))
        responses = asyncio.ensure_future(self._responses(server_first))
        tasks = {requests, responses}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task

    # -- client to server ---------------------------------------------------------------------

    async def _requests(self, data: bytes) -> None:
        s = self.s
        src, dst = s.client, s.server
        held = b""  # the start of a request head not complete yet
        held_sent = 0  # how much of `held` was sent already (no rule was installed when it came)
        left = 0  # Content-Length body bytes still to come
        chunks: Chunks | None = None
        discard = False  # the body belongs to a request the proxy answered itself
        q = self.queue
        transport = dst.writer.transport
        recording = s.recording
        while True:
            if not data:
                data = await src.read(_READ)
                if not data:
                    if len(held) > held_sent:
                        dst.write(held[held_sent:])  # an unfinished head, as the client left it
                    _write_eof(dst)
                    return
            if not (held or left or discard or recording or self.raw_req or s.faulting) and chunks is None:
                # The common case first, with the least work: one whole plain request in this read.
                transport.write(data)
                n = len(data)
                hend = data.find(CRLF2) + 4
                if hend > 3 and self.upgrade is None and data[0] not in b"HCc\r\n":
                    low = data[:hend].lower() if hend < n else data.lower()
                    if b"\nupgrade:" not in low and b"\ntransfer-encoding:" not in low:
                        i = low.find(b"\ncontent-length:")
                        clen = 0 if i < 0 else to_int(low[i + 16 : low.find(b"\r", i)])
                        if hend + clen == n:
                            q.append(_PLAIN)
                            if transport.get_write_buffer_size():
                                await dst.drain()
                            data = b""
                            continue
                sent = n  # anything else: framed below, already sent
            elif self.raw_req:
                dst.write(data)
                await dst.drain()
                data = b""
                continue
            else:
                sent = 0
                if held:
                    data, sent, held, held_sent = held + data, held_sent, b"", 0
                n = len(data)
                if not discard and not s.faulting and sent < n:
                    # Nothing in this read will be held back: pass it on first, frame it after.
                    dst.write(data[sent:] if sent else data)
                    sent = n
            pos = 0
            limit = n
            try:
                while pos < n:
                    if left:
                        end = pos + left if n - pos > left else n
                        left -= end - pos
                        if discard:
                            if sent < pos:
                                dst.write(data[sent:pos])
                            sent = max(sent, end)
                            discard = left > 0
                        pos = end
                        continue
                    if chunks is not None:
                        end = chunks.feed(data, pos)
                        finished = end >= 0
                        if not finished:
                            end = n
                        if discard:
                            if sent < pos:
                                dst.write(data[sent:pos])
                            sent = max(sent, end)
                        pos = end
                        if finished:
                            chunks = None
                            discard = False
                        continue
                    if self.upgrade is not None:
                        # After an upgrade request the bytes may be another protocol: wait for the answer.
                        if sent < pos:
                            dst.write(data[sent:pos])
                            sent = pos
                        await dst.drain()
                        accepted = await self.upgrade
                        self.upgrade = None
                        if accepted:
                            self.raw_req = True
                            break
                    if data[pos] in b"\r\n":  # stray line ends between messages, which RFC 9112 lets a server skip
                        pos += 1
                        continue
                    hend = data.find(CRLF2, pos)
                    if hend < 0:
                        if n - pos > MAX_HEAD:
                            raise Garbled("a request head over 256 KiB")
                        probe(data[pos:])
                        held, held_sent, limit = data[pos:], max(0, sent - pos), pos
                        break
                    hend += 4
                    decide = sent <= pos and s.faulting
                    ex, length, te, close = self._request_head(data[pos:hend], decide or s.recording)
                    verdict = s.decide(method=ex.method, path=ex.path) if decide else None
                    if verdict is not None:
                        if sent < pos:
                            dst.write(data[sent:pos])
                            sent = pos
                        if verdict.delay:
                            await dst.drain()
                            await s.wait(verdict)
                        action = verdict.action
                        if action is ProxyAction.DROP:
                            s.client.reset()
                            s.server.reset()
                            raise Dropped
                        if verdict.rule is not None and action in (ProxyAction.RESPOND, ProxyAction.ERROR):
                            has_body = te == 1 or bool(length)
                            # Answering before an expected body arrived leaves it unclear whether it will:
                            # close, as RFC 9110 lets a server do.
                            expect = b"100-continue" in data[pos:hend].lower()
                            ex.close = close or (expect and has_body) or ex.upgrade
                            ex.status, ex.inject = h1_reply(verdict.rule.fault, head_only=ex.head, close=ex.close)
                            sent = hend
                            self._inject(ex)
                            if ex.close:
                                return
                            discard = has_body
                            pos = hend
                            if te == 1:
                                chunks = Chunks()
                            elif length:
                                left = length
                            continue
                    self.queue.append(ex)
                    if ex.upgrade:
                        self.upgrade = asyncio.get_running_loop().create_future()
                    pos = hend
                    if te == 1:
                        chunks = Chunks()
                    elif te == 2:
                        raise Garbled("a request body framed by neither Content-Length nor chunked")
                    elif length:
                        left = length
            except Garbled as exc:
                untouched(s, f"client sent bytes that are not HTTP/1.x ({exc})")
                self.raw_req = True
                held = b""
                limit = n
            if sent < limit:
                dst.write(data[sent:limit])
            await dst.drain()
            data = b""

    def _request_head(self, head: bytes, decode: bool) -> tuple[_Exchange, int | None, int, bool]:
        """(exchange, Content-Length, Transfer-Encoding kind, closes the connection). Without `decode`
        (no rule to match, nothing to record) a plain request is only framed, which is all relaying needs."""
        low = head.lower()
        if not decode and b"\nupgrade:" not in low and not low.startswith((b"head ", b"connect ")):
            length, te = lengths(low)
            return _PLAIN, length, te, False
        parser = httptools.HttpRequestParser(QUIET)
        upgrade = False
        try:
            parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            upgrade = True
        except httptools.HttpParserError as exc:
            raise Garbled(f"bad request head ({exc})") from None
        # httptools validated the request line (single spaces, a known method): split it directly,
        # cheaper than an on_url callback.
        line = head[: head.find(b"\r\n")]
        method, _, rest = line.partition(b" ")
        ex = _Exchange(method.decode("ascii"), rest.rpartition(b" ")[0], upgrade)
        if self.s.recording:
            ex.t0 = time.monotonic()
            ex.headers = header_fields(head_header_pairs(head))
        length, te = lengths(low)
        return ex, length, te, not parser.should_keep_alive()

    def _inject(self, ex: _Exchange) -> None:
        """Answer in the request's place: now when nothing is owed before it, else after the server's
        answers to the requests before it."""
        if not self.queue and not self.resp_mid:
            self._deliver(ex)
        else:
            self.queue.append(ex)
            self.injected += 1

    def _deliver(self, ex: _Exchange) -> None:
        assert ex.inject is not None
        self.s.client.write(ex.inject)
        self._record(ex, ex.status)
        if ex.close:
            self.s.client.close()
            self.s.server.close()

    def _record(self, ex: _Exchange | None, status: int) -> None:
        if ex is not None and self.s.recording:
            self.s.record(
                {
                    "method": ex.method,
                    "path": ex.path,
                    "status": status,
                    "duration_ms": round((time.monotonic() - ex.t0) * 1000, 1),
                    **ex.headers,
                }
            )

    # -- server to client ---------------------------------------------------------------------

    async def _responses(self, first: asyncio.Future[bytes]) -> None:
        s = self.s
        src, dst = s.server, s.client
        q = self.queue
        head = b""  # the start of a response head not complete yet (already passed on)
        left = 0
        chunks: Chunks | None = None
        to_eof = False  # a body that ends when the server closes
        transport = dst.writer.transport
        data = await first
        try:
            while True:
                if not data:
                    data = await src.read(_READ)
                    if not data:
                        break
                if q and not (head or left or to_eof or self.injected or self.raw_resp) and chunks is None:
                    # The common case first: one whole answer with a Content-Length to a plain request.
                    transport.write(data)
                    front = q[0]
                    hend = data.find(CRLF2) + 4
                    if hend > 3 and not (front.head or front.upgrade or front.connect) and data.startswith(b"HTTP/1."):
                        low = data[:hend].lower()
                        i = low.find(b"\ncontent-length:")
                        status = to_int(data[9:12])
                        if (
                            i >= 0
                            and status >= 200
                            and status != 204
                            and status != 304
                            and b"\ntransfer-encoding:" not in low
                            and hend + to_int(low[i + 16 : low.find(b"\r", i)]) == len(data)
                        ):
                            q.popleft()
                            if s.recording:
                                self._record(front, status)
                            if transport.get_write_buffer_size():
                                await dst.drain()
                            data = b""
                            continue
                    written = True
                else:
                    written = False
                if self.raw_resp or to_eof:
                    dst.write(data)
                    await dst.drain()
                    data = b""
                    continue
                n = len(data)
                sent = 0
                if written:
                    sent = n
                elif not self.injected:
                    dst.write(data)
                    sent = n
                pos = 0
                try:
                    while pos < n:
                        if left:
                            end = pos + left if n - pos > left else n
                            left -= end - pos
                            pos = end
                            if not left:
                                sent = self._answered(data, sent, pos)
                            continue
                        if chunks is not None:
                            end = chunks.feed(data, pos)
                            if end < 0:
                                pos = n
                                continue
                            chunks = None
                            pos = end
                            sent = self._answered(data, sent, pos)
                            continue
                        if not head and data[pos] in b"\r\n":
                            pos += 1
                            continue
                        self.resp_mid = True
                        if head:
                            buf, hstart, base = head + data[pos:], 0, pos - len(head)
                        else:
                            buf, hstart, base = data, pos, 0
                        hend = buf.find(CRLF2, hstart)
                        if hend < 0:
                            if len(buf) - hstart > MAX_HEAD:
                                raise Garbled("a response head over 256 KiB")
                            head = buf[hstart:] if hstart else buf
                            pos = n
                            break
                        hend += 4
                        status, length, te = response_head(buf[hstart:hend], s.faulting)
                        head = b""
                        hend += base
                        pos = hend
                        ex = q[0] if q else None
                        if 100 <= status < 200:
                            if status == 101:
                                self._accept_upgrade(ex, True)
                                if ex is not None:
                                    q.popleft()
                                    self._record(ex, status)
                                self.raw_resp = True
                                break
                            continue  # an interim answer: the final one follows
                        if ex is not None and (ex.upgrade or ex.connect):
                            tunnel = ex.connect and 200 <= status < 300
                            self._accept_upgrade(ex, tunnel)
                            if tunnel:
                                q.popleft()
                                self._record(ex, status)
                                self.raw_resp = True
                                break
                        if (ex is not None and ex.head) or status in (204, 304):
                            sent = self._answered(data, sent, pos, status)
                        elif te == 1:
                            chunks = Chunks()
                        elif te == 0 and length is not None:
                            if length:
                                left = length
                            else:
                                sent = self._answered(data, sent, pos, status)
                        else:
                            to_eof = True
                            self.status = status
                            break
                        self.status = status
                except Garbled as exc:
                    untouched(s, f"server sent bytes that are not HTTP/1.x ({exc})")
                    self.raw_resp = True
                except _Closed:
                    return
                if sent < n:
                    dst.write(data[sent:])
                self.resp_mid = bool(head) or bool(left) or chunks is not None or to_eof
                await dst.drain()
                data = b""
        finally:
            self._accept_upgrade(None, False)
        # The server is gone: a body that lasted until now is complete, answers already due go out,
        # then the client hears the close.
        if to_eof and q and q[0].inject is None:
            self._record(q.popleft(), self.status)
        elif not self.resp_mid:
            while q and q[0].inject is not None:
                self.injected -= 1
                self._deliver(q.popleft())
        _write_eof(dst)

    def _answered(self, data: bytes, sent: int, pos: int, status: int | None = None) -> int:
        """A response ended at data[pos]: pair it with its request, then send any injected answers
        due right after it. Returns how far `data` has been written."""
        q = self.queue
        if status is not None:
            self.status = status
        self.resp_mid = False
        if q and q[0].inject is None:
            self._record(q.popleft(), self.status)
        while q and q[0].inject is not None:
            if sent < pos:
                self.s.client.write(data[sent:pos])
                sent = pos
            self.injected -= 1
            ex = q.popleft()
            self._deliver(ex)
            if ex.close:
                raise _Closed
        return sent

    def _accept_upgrade(self, ex: _Exchange | None, accepted: bool) -> None:
        fut = self.upgrade
        if fut is not None and not fut.done() and (ex is None or ex.upgrade):
            fut.set_result(accepted)


def _write_eof(stream: Stream) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        if stream.writer.can_write_eof():
            stream.writer.write_eof()
