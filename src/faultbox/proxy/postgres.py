"""The PostgreSQL proxy (wire protocol 3): relays both directions at once and injects statement faults.

Startup: an SSLRequest or GSSENCRequest is answered `N` by the proxy itself (the proxy speaks plain
TCP to the server, so the client falls back to an unencrypted session, as `sslmode=prefer` allows);
the StartupMessage and everything after it, authentication included (trust, MD5, SCRAM without
channel binding), is relayed. A CancelRequest is relayed and its connection spliced. Any other
startup packet (protocol 2, a TLS ClientHello of `sslnegotiation=direct`, garbage) is relayed
untouched after one warning. Protocol 3.x minor versions are decoded (their framing is the same).

Requests: `query=` sees each statement of a simple Query (split on `;`), the SQL of a Parse, and the
SQL of the statement a Bind executes (named statements are remembered from their Parse until their
Close/DEALLOCATE). The rule book is asked once per execution: per statement of a Query, per Bind in
the extended protocol. Leading comments are not part of the text a glob sees.

Faults: `delay` holds the execution (and what the client sends after it) back; `drop` resets both
sides; `error` makes the *server* raise the error: a faulted simple Query statement is replaced by a
`DO` block that raises the SQLSTATE and message (statements before it in the same Query still run);
a faulted Bind and the rest of its batch up to Sync are replaced by the proxy's own named statement
running that block. The replies to the proxy's own messages are swallowed and the PL/pgSQL context
is stripped from its ErrorResponse, so the client sees an ErrorResponse and the server's true
ReadyForQuery, and a transaction the error hit is failed on the server too.

Limits: the error needs PL/pgSQL (installed in every database by default); inside a failed
transaction the client gets the server's 25P02 instead of the chosen error, as a real statement
would; a rule installed in the middle of a batch applies from the client's next Sync on; after an
extended-protocol error the proxy's statement `faultbox_injected_fault` stays prepared on that
connection (it is closed and replaced at the next one). TLS is never offered to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from faultbox.proxy.postgres_client import ClientSide
from faultbox.proxy.postgres_server import ServerSide
from faultbox.proxy.postgres_wire import Control, Wire
from faultbox.proxy.session import Session, Stream

_CHUNK = 1 << 18
_STARTUP_MAX = 10_000  # the server's own limit on a startup packet
# A client silent this long after connecting is dropped, as the server would (authentication_timeout).
_STARTUP_TIMEOUT = 60.0
_CANCEL_REQUEST = 80877102
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_INT = struct.Struct("!I")


async def serve(session: Session) -> None:
    if not await _startup(session):
        return
    wire = Wire()
    requests = ClientSide(
        wire,
        lambda sql: session.decide(query=sql),
        lambda: session.faulting,
        session.recording,
        session.warn,
    )
    replies = ServerSide(wire, session.record if session.recording else None, session.warn)
    # Two independent directions: the server's asynchronous messages (NOTIFY, notices) reach an idle
    # client as soon as they are sent, and a delayed request holds back only what follows it.
    tasks = {
        asyncio.ensure_future(_client_to_server(session, requests)),
        asyncio.ensure_future(_server_to_client(session, replies)),
    }
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.result():  # raises what the direction raised; True: the connection was dropped
                    return
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _startup(session: Session) -> bool:
    """Relay the startup; True when a protocol 3 session follows, False when the connection was
    handled otherwise (spliced, or closed by the client)."""
    client, server = session.client, session.server
    while True:
        try:
            head = await asyncio.wait_for(client.readexactly(4), _STARTUP_TIMEOUT)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                await _relay_untouched(session, exc.partial, "a startup packet cut short")
            return False
        except TimeoutError:
            return False
        length = _INT.unpack(head)[0]
        if not 8 <= length <= _STARTUP_MAX:
            await _relay_untouched(session, head, "not a PostgreSQL startup packet")
            return False
        try:
            body = await asyncio.wait_for(client.readexactly(length - 4), _STARTUP_TIMEOUT)
        except asyncio.IncompleteReadError as exc:
            await _relay_untouched(session, head + exc.partial, "a startup packet cut short")
            return False
        except TimeoutError:
            return False
        code = _INT.unpack_from(body)[0]
        if length == 8 and code in (_SSL_REQUEST, _GSSENC_REQUEST):
            client.write(b"N")  # no encryption: the client sends its StartupMessage next
            await client.drain()
            continue
        if code == _CANCEL_REQUEST:
            server.write(head + body)
            await server.drain()
            await session.splice()
            return False
        if code >> 16 != 3:
            await _relay_untouched(session, head + body, f"protocol version {code >> 16}.{code & 0xFFFF}")
            return False
        server.write(head + body)
        await server.drain()
        return True


async def _relay_untouched(session: Session, first: bytes, what: str) -> None:
    session.warn(f"postgres proxy of {session.endpoint.interface}: {what}; relaying the connection untouched")
    session.server.write(first)
    await session.server.drain()
    await session.splice()


async def _client_to_server(session: Session, side: ClientSide) -> bool:
    client, server = session.client, session.server
    write = server.writer.write  # takes the memoryviews feed returns: no copy
    while True:
        data = await client.read(_CHUNK)
        if not data:
            break
        for op in side.feed(data):
            if isinstance(op, (bytes, memoryview)):
                write(op)
            elif isinstance(op, float):
                await server.drain()
                await asyncio.sleep(op)
            elif op is Control.DROP:
                client.reset()
                server.reset()
                return True
            else:
                await _undecodable(session, client, server, f"the client sent {side.why}")
                return False
        await server.drain()
    _half_close(server)
    return False


async def _server_to_client(session: Session, side: ServerSide) -> bool:
    src, dst = session.server, session.client
    write = dst.writer.write
    while True:
        data = await src.read(_CHUNK)
        if not data:
            break
        for op in side.feed(data):
            if isinstance(op, (bytes, memoryview)):
                write(op)
            else:  # Control.RAW
                await _undecodable(session, src, dst, f"the server sent {side.why}")
                return False
        await dst.drain()
    _half_close(dst)
    return False


async def _undecodable(session: Session, src: Stream, dst: Stream, what: str) -> None:
    session.warn(f"postgres proxy of {session.endpoint.interface}: {what}; relaying the rest untouched")
    await dst.drain()
    await session.pipe(src, dst)


def _half_close(dst: Stream) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        if dst.writer.can_write_eof():
            dst.writer.write_eof()
