"""The TCP proxy: bytes relayed both ways at once; rules match on the connection's first line.

The server's direction is relayed from the start, so server-speaks-first protocols work with an
idle client; `method=` is a glob on the first line the client sends (up to 4 KiB, without the
line end). `delay` holds that first chunk
back; `drop` resets the connection.
"""

from __future__ import annotations

import asyncio
import contextlib

from faultbox.model.proxy import ProxyAction
from faultbox.proxy.session import Session

_FIRST_CHUNK = 4096


async def serve(session: Session) -> None:
    to_client = asyncio.ensure_future(session.pipe(session.server, session.client))
    try:
        first = await session.client.read(_FIRST_CHUNK)
        if first:
            line = first.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
            verdict = session.decide(method=line)
            if verdict is not None:
                await session.wait(verdict)
                if verdict.action is ProxyAction.DROP:
                    session.client.reset()
                    session.server.reset()
                    return
            session.server.write(first)
            # Decided: the rest is relayed at the transports, with no task per chunk.
            to_client.cancel()
            with contextlib.suppress(BaseException):
                await to_client
            await session.splice()
            return
        else:
            with contextlib.suppress(OSError, RuntimeError):
                session.server.writer.write_eof()
        await to_client
    finally:
        if not to_client.done():
            to_client.cancel()
            with contextlib.suppress(BaseException):
                await to_client
