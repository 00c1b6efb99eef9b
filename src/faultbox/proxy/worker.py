"""The proxy worker: the run's proxies in a process of their own.

    python -m faultbox.proxy.worker FD

The runner's threads (event ingestion, monitors, output pumps) hold the interpreter lock often;
a relay sharing it would add their busy time to the system under test's round trips (measured:
p99 went from ~1 ms to ~60 ms with one busy thread beside the proxy). Here the proxy's event loop
has an interpreter to itself. The runner (proxy/remote.py) talks to it over one SOCK_SEQPACKET
socket of pickled messages:

    -> ("open", req, lid, endpoint, run_seed, host, port)   <- ("ok", req, (host, port)) | ("err", req, text)
    -> ("rules", req, lid, [Installed, ...])                <- ("ok", req, {rule id: (matched, fired, 0)})
    -> ("close", req, lid)                                  <- ("ok", req, None)
    -> ("sync", req)                                        <- ("ok", req, None), after every event before it
    -> ("mock", req, lid, endpoint, MockConfig)             <- ("ok", req, (host, port)) | ("err", req, text)
                                                            <- ("events", [(lid, type, fields), ...])
                                                            <- ("call", cid, lid, handler, request dict)
    -> ("answer", cid, "ok" | "error", MockResponse | text)     (no reply: it answers a call)
Events and replies share the socket, in order: a reply to "sync" comes after every event the
proxies emitted before it. A mock's `dynamic(fn)` answer is computed in the runner: the worker sends a "call" (after the
events before it) and the mock's request waits for its "answer". The worker exits when the socket
closes or its parent dies.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import itertools
import os
import pickle
import signal
import socket
import sys
import threading
from typing import Any

from faultbox._util.imports import decline_test_data_generators
from faultbox.model.mock import MockConfig
from faultbox.proxy.hub import Listener, ProxyHub
from faultbox.proxy.mock import Caller, MockServer
from faultbox.proxy.session import Endpoint

_PR_SET_PDEATHSIG = 1
MAX_MESSAGE = 4 * 1024 * 1024


class Worker:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.hub = ProxyHub()
        self.listeners: dict[int, Listener] = {}
        self.mocks: dict[int, MockServer] = {}
        self._calls: dict[int, asyncio.Future[tuple[str, Any]]] = {}
        self._call_ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._pending: list[tuple[int, str, dict[str, str]]] = []
        self.limit = min(MAX_MESSAGE, sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2)
        self._flush_scheduled = False

    def send(self, message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        splittable = message[0] == "events" and len(message[1]) > 1
        with self._send_lock:
            if len(data) <= self.limit or not splittable:
                try:
                    self.sock.sendall(data)
                    return
                except OSError as exc:
                    if exc.errno != errno.EMSGSIZE or not splittable:
                        raise
        # An event batch too big for one packet (the kernel caps a datagram at the socket's buffer,
        # which may be far below what was asked for) goes out in halves; a reply is always small.
        events = message[1]
        half = len(events) // 2
        self.send(("events", events[:half]))
        self.send(("events", events[half:]))

    # -- events, on the loop thread: batched per loop iteration ---------------------------------

    def emitter(self, lid: int) -> Any:
        def emit(type: str, fields: dict[str, str]) -> None:
            self._pending.append((lid, type, fields))
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.hub.loop.call_soon(self.flush)

        return emit

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._pending:
            batch, self._pending = self._pending, []
            self.send(("events", batch))

    async def _flush_now(self) -> None:
        self.flush()

    # -- dynamic answers of mocks, on the loop thread -------------------------------------------

    def caller(self, lid: int) -> Caller:
        async def call(handler: int, request: dict[str, Any]) -> tuple[str, Any]:
            cid = next(self._call_ids)
            future: asyncio.Future[tuple[str, Any]] = self.hub.loop.create_future()
            self._calls[cid] = future
            try:
                self.flush()  # the events before the call reach the runner before it
                self.send(("call", cid, lid, handler, request))
                return await future
            finally:
                self._calls.pop(cid, None)

        return call

    def _answered(self, cid: int, outcome: tuple[str, Any]) -> None:
        future = self._calls.get(cid)
        if future is not None and not future.done():
            future.set_result(outcome)

    # -- requests, on the main thread -----------------------------------------------------------

    def serve(self) -> None:
        while True:
            try:
                data = self.sock.recv(MAX_MESSAGE)
            except OSError:
                break
            if not data:
                break
            request = pickle.loads(data)
            if request[0] == "answer":
                _, cid, kind, value = request
                self.hub.loop.call_soon_threadsafe(self._answered, cid, (kind, value))
                continue
            try:
                value = self.handle(request)
            except Exception as exc:
                self.send(("err", request[1], f"{type(exc).__name__}: {exc}"))
            else:
                self.send(("ok", request[1], value))
        self.hub.close()

    def handle(self, request: tuple[Any, ...]) -> Any:
        kind = request[0]
        if kind == "open":
            _, _, lid, endpoint, run_seed, host, port = request
            assert isinstance(endpoint, Endpoint)
            listener = self.hub.open(endpoint, self.emitter(lid), run_seed=run_seed, host=host, port=port)
            self.listeners[lid] = listener
            return (listener.host, listener.port)
        if kind == "mock":
            _, _, lid, endpoint, config = request
            assert isinstance(endpoint, Endpoint) and isinstance(config, MockConfig)
            server = self.hub.open_mock(endpoint, config, self.emitter(lid), self.caller(lid))
            self.mocks[lid] = server
            return (server.host, server.port)
        if kind == "rules":
            _, _, lid, rules = request
            return self.listeners[lid].set_rules(rules)
        if kind == "close":
            closing: int = request[2]
            if closing in self.listeners:
                self.listeners.pop(closing).close()
            if closing in self.mocks:
                self.hub.call(self.mocks.pop(closing).stop(), 10.0)
            self.hub.call(self._flush_now())
            return None
        if kind == "sync":
            self.hub.call(self._flush_now())
            return None
        raise ValueError(f"unknown request {kind!r}")


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the line above ran
        os._exit(0)


def main() -> None:
    decline_test_data_generators()  # 0.7 of this process's 1.1 s start, measured on 2 cores
    fd = int(sys.argv[1])
    _die_with_parent(int(os.environ.get("FAULTBOX_RUNNER_PID", os.getppid())))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle
    sock = socket.socket(fileno=fd)
    Worker(sock).serve()


if __name__ == "__main__":
    main()
