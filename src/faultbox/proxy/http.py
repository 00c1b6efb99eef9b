"""The HTTP proxy: HTTP/1.x, and HTTP/2 over cleartext with prior knowledge (h2c), on one port.

The client's first bytes choose: the HTTP/2 connection preface means h2c, a valid HTTP/1.x request
line means HTTP/1.x, anything else (or a server that speaks first) is warned about once and relayed
untouched. Rules match `method=` and `path=` (the request target's path, without the query).
`response()` and `error()` answer in the request's place and the request never reaches the server;
`delay()` holds the request before it is forwarded; `drop()` resets both TCP connections.

HTTP/1.x (faultbox.proxy.http_h1): requests and responses are relayed as the bytes came, never
re-serialised, with keep-alive, pipelining (an injected answer keeps its place in the order),
chunked and streamed bodies, `Expect: 100-continue`, HEAD/204/304, and `Upgrade`/CONNECT (relayed
untouched after the 101 or 2xx). Request heads are held back, and parsed with httptools, only
while rules are installed. Limits: an injected answer to a request that expects 100-continue, that
asked to close, or that asked to upgrade, closes the connection; an `Upgrade: h2c` connection is
relayed untouched after its 101; a request being forwarded when a rule is installed is not matched.

h2c (faultbox.proxy.http_h2): the proxy terminates HTTP/2 on both sides and maps streams, relaying
headers, data (under both connections' flow control), trailers and resets; frames are re-encoded,
so HPACK state, frame sizes and padding are the proxy's own. Server push is refused upstream.
"""

from __future__ import annotations

import asyncio
import contextlib

from faultbox.proxy.http_frame import Dropped, Garbled, probe
from faultbox.proxy.http_h1 import H1
from faultbox.proxy.http_h2 import H2, PREFACE
from faultbox.proxy.http_reply import untouched
from faultbox.proxy.session import Session, Stream

_READ = 1 << 16


async def serve(session: Session) -> None:
    client = session.client
    # Both sides are read from the start, so a server that speaks first is relayed, not waited on.
    server_first = asyncio.ensure_future(session.server.read(_READ))
    first = asyncio.ensure_future(client.read(_READ))
    try:
        await asyncio.wait({first, server_first}, return_when=asyncio.FIRST_COMPLETED)
        if server_first.done() and not first.done():
            # HTTP servers do not speak first: whatever this is, relay it as it is.
            greeting = server_first.result()
            if greeting and not greeting.startswith(b"HTTP/"):
                untouched(session, "the server spoke before the client")
            await _relay(session, first, server_first)
            return
        data = first.result()
        while data and len(data) < len(PREFACE) and PREFACE.startswith(data):
            more = await client.read(_READ)
            if not more:
                break
            data += more
        if data.startswith(PREFACE):
            await H2(session).run(data, server_first)
            return
        if data:
            try:
                probe(data.split(b"\r\n\r\n", 1)[0])
            except Garbled:
                untouched(session, "the client sent something other than HTTP/1.x or the HTTP/2 preface")
                await _relay(session, _done(data), server_first)
                return
        await H1(session).run(data, server_first)
    except Dropped:
        return
    finally:
        for task in (first, server_first):
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


async def _relay(session: Session, client_first: asyncio.Future[bytes], server_first: asyncio.Future[bytes]) -> None:
    """Relay both directions untouched, each starting with the read already made on it."""

    async def one(first: asyncio.Future[bytes], src: Stream, dst: Stream) -> None:
        data = await first
        if data:
            dst.write(data)
            await dst.drain()
            await session.pipe(src, dst)
        else:
            with contextlib.suppress(OSError, RuntimeError):
                if dst.writer.can_write_eof():
                    dst.writer.write_eof()

    await asyncio.gather(
        one(client_first, session.client, session.server), one(server_first, session.server, session.client)
    )


def _done(data: bytes) -> asyncio.Future[bytes]:
    fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    fut.set_result(data)
    return fut
