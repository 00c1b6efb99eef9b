"""The proxies of a run: one event loop in a thread of its own, one listener per interface.

The loop (uvloop when installed) carries every proxied connection of the run; the runner talks to
it only through ProxyHub/Listener methods, which are thread-safe and bounded in time. A listener
accepts on 127.0.0.1:<port>, dials the real interface for each connection, and hands both sides
to the interface protocol's codec (CODECS). A codec that fails on a stream it cannot decode is
logged as one warning and the rest of that connection is relayed untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from faultbox.model.mock import MockConfig
from faultbox.model.proxy import ProxyFault
from faultbox.proxy.mock import MOCK_SERVERS, Caller, MockContext, MockServer
from faultbox.proxy.rules import Installed, RuleBook
from faultbox.proxy.session import Endpoint, EventSink, Session, Stream

T = TypeVar("T")
Codec = Callable[[Session], Awaitable[None]]

# Protocol -> module with `async def serve(session)`. A protocol not listed has no proxy: its
# consumers reach the service directly.
CODECS: dict[str, str] = {
    "tcp": "faultbox.proxy.tcp",
    "http": "faultbox.proxy.http",
    "http2": "faultbox.proxy.http",
    "postgres": "faultbox.proxy.postgres",
    "redis": "faultbox.proxy.redis",
    "kafka": "faultbox.proxy.kafka",
}

_CLOSE_TIMEOUT = 5.0


def codec_for(protocol: str) -> Codec | None:
    module = CODECS.get(protocol)
    if module is None:
        return None
    try:
        serve: Codec = importlib.import_module(module).serve
    except (ImportError, AttributeError):
        return None
    return serve


def has_proxy(protocol: str) -> bool:
    return codec_for(protocol) is not None


def check_fault(protocol: str, fault: ProxyFault) -> str | None:
    """What the protocol's codec finds wrong with a fault's values (an unknown Kafka error code),
    or None. Codecs that check nothing beyond the model's table have no `check_fault`."""
    module = CODECS.get(protocol)
    if module is None:
        return None
    try:
        check = getattr(importlib.import_module(module), "check_fault", None)
    except ImportError:
        return None
    return check(fault) if check is not None else None


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


class ProxyHub:
    """The run's proxy thread. Create once per run; close() ends every listener and the thread."""

    def __init__(self) -> None:
        self.loop = _new_loop()
        self._thread = threading.Thread(target=self._run, name="faultbox-proxy", daemon=True)
        self._thread.start()
        self._conn_ids = itertools.count(1)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = _CLOSE_TIMEOUT) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def open(
        self,
        endpoint: Endpoint,
        emit: EventSink,
        *,
        run_seed: int = 0,
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> Listener:
        """Start a proxy for `endpoint` on host:port (0: any free port); returns once it accepts."""
        codec = codec_for(endpoint.protocol)
        if codec is None:
            raise ValueError(f"no proxy for protocol {endpoint.protocol!r}")
        listener = Listener(self, endpoint, codec, emit, RuleBook(run_seed))
        self.call(listener._start(host, port))
        return listener

    def open_mock(self, endpoint: Endpoint, config: MockConfig, emit: EventSink, call: Caller) -> MockServer:
        """Serve a mock on its interface's own host:port; returns once it accepts."""
        if endpoint.protocol not in MOCK_SERVERS:
            raise ValueError(f"no mock server for protocol {endpoint.protocol!r}")
        server = MockServer(self.loop, MockContext(endpoint, config, emit, call))
        self.call(server.start())
        return server

    def next_conn_id(self) -> int:
        return next(self._conn_ids)

    def close(self) -> None:
        if self.loop.is_closed():
            return

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT) if tasks else None

        with contextlib.suppress(Exception):
            self.call(shutdown(), _CLOSE_TIMEOUT + 1)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(_CLOSE_TIMEOUT)
        if not self._thread.is_alive():
            self.loop.close()


class Listener:
    """The proxy of one interface."""

    def __init__(self, hub: ProxyHub, endpoint: Endpoint, codec: Codec, emit: EventSink, rules: RuleBook) -> None:
        self.hub = hub
        self.endpoint = endpoint
        self.codec = codec
        self.emit = emit
        self.rules = rules
        self.host = "127.0.0.1"
        self.port = 0
        self.warnings: list[str] = []
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._warned: set[str] = set()

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def set_rules(self, rules: Sequence[Installed]) -> dict[int, tuple[int, int, int]]:
        """Install exactly these rules (innermost scope first); stats of the rules removed."""
        return self.rules.set(rules)

    def close(self) -> None:
        """Stop accepting and cut every connection (bounded); safe to call twice."""
        if self._server is None or self.hub.loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self.hub.call(self._stop(), _CLOSE_TIMEOUT + 1)

    # -- on the loop ---------------------------------------------------------------------------

    async def _start(self, host: str, port: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        sock.listen(512)
        sock.setblocking(False)
        self._server = await asyncio.start_server(self._accept, sock=sock, limit=1 << 20)
        self.host, self.port = sock.getsockname()[:2]

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=_CLOSE_TIMEOUT)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), _CLOSE_TIMEOUT)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._conns.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ep = self.endpoint
        conn_id = self.hub.next_conn_id()
        _nodelay(writer)
        peer = writer.get_extra_info("peername")
        client = Stream(reader, writer)
        opened = time.monotonic()
        try:
            up_reader, up_writer = await asyncio.open_connection(ep.target_host, ep.target_port, limit=1 << 20)
        except OSError as exc:
            self.emit(
                "proxy_conn_close",
                {
                    "interface": ep.interface,
                    "protocol": ep.protocol,
                    "conn_id": str(conn_id),
                    "reason": "upstream_refused",
                    "error": str(exc)[:200],
                },
            )
            client.reset()
            return
        _nodelay(up_writer)
        server = Stream(up_reader, up_writer)
        self.emit(
            "proxy_conn_open",
            {
                "interface": ep.interface,
                "protocol": ep.protocol,
                "conn_id": str(conn_id),
                "client": f"{peer[0]}:{peer[1]}" if peer else "",
                "target": f"{ep.target_host}:{ep.target_port}",
            },
        )
        session = Session(ep, conn_id, client, server, self.rules, self.emit, self._warn)
        reason = "eof"
        try:
            await self.codec(session)
        except asyncio.CancelledError:
            reason = "proxy_stopped"
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            reason = "io_error"
        except Exception as exc:  # a codec bug or an undecodable stream: say so, relay the rest
            self._warn(f"{ep.protocol} proxy of {ep.service}.{ep.interface}: {type(exc).__name__}: {exc}")
            reason = "codec_error"
            with contextlib.suppress(Exception):
                await session.splice()
        finally:
            client.close()
            server.close()
        self.emit(
            "proxy_conn_close",
            {
                "interface": ep.interface,
                "protocol": ep.protocol,
                "conn_id": str(conn_id),
                "reason": reason,
                "duration_ms": str(int((time.monotonic() - opened) * 1000)),
                "bytes_c2s": str(client.bytes_read),
                "bytes_s2c": str(server.bytes_read),
            },
        )

    def _warn(self, message: str) -> None:
        if message in self._warned:
            return
        self._warned.add(message)
        self.warnings.append(message)
        ep = self.endpoint
        self.emit("proxy_warning", {"interface": ep.interface, "protocol": ep.protocol, "warning": message[:500]})


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
