"""The runner's side of the proxy worker (proxy/worker.py): the same `open`/`Listener` surface as
an in-process ProxyHub, with the proxies running in a process of their own.

A reader thread takes every message in order: event batches go to their listener's `emit`,
replies wake the waiting request. Replies and events share one ordered socket, so `sync()`
returning means every event the proxies emitted before it has been handed to its `emit`. If the
worker dies, waiting and later requests fail and `on_dead` is told once.
"""

from __future__ import annotations

import itertools
import os
import pickle
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from faultbox.errors import Code, InfraError
from faultbox.model.mock import MockConfig
from faultbox.proxy.rules import Installed
from faultbox.proxy.session import Endpoint, EventSink
from faultbox.proxy.worker import MAX_MESSAGE

_TIMEOUT = 10.0

# (handler number, request dict) -> ("ok", MockResponse) | ("error", message); runs on a thread of its own.
MockHandler = Callable[[int, dict[str, Any]], tuple[str, Any]]
Calls = queue.SimpleQueue[tuple[int, int, dict[str, Any]] | None]  # (call id, handler, request); None ends


class ProxyWorkerError(InfraError):
    """The proxy worker died, hung or refused a request."""

    code = Code.PROXY_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(self.code, message)


class _Pending:
    __slots__ = ("done", "ok", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None


class RemoteHub:
    def __init__(self, on_dead: Callable[[str], None] | None = None) -> None:
        self.on_dead = on_dead
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (ours, theirs):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MAX_MESSAGE)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, MAX_MESSAGE)
        self._sock = ours
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faultbox.proxy.worker", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, FAULTBOX_RUNNER_PID=str(os.getpid())),
        )
        theirs.close()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._emitters: dict[int, EventSink] = {}
        self._listeners: dict[int, RemoteListener] = {}
        self._handlers: dict[int, MockHandler] = {}
        # A mock's calls, run in order by a thread of its own (the worker makes them one at a time).
        self._calls: dict[int, Calls] = {}
        self.dead: str | None = None
        self._closing = False
        self._reader = threading.Thread(target=self._read, name="faultbox-proxy-reader", daemon=True)
        self._reader.start()

    # -- requests ------------------------------------------------------------------------------

    def request(self, *parts: Any, timeout: float = _TIMEOUT) -> Any:
        req = next(self._ids)
        pending = _Pending()
        with self._lock:
            if self.dead is not None:
                raise ProxyWorkerError(f"the proxy worker is gone ({self.dead})")
            self._pending[req] = pending
            try:
                self._sock.sendall(pickle.dumps((parts[0], req, *parts[1:]), protocol=pickle.HIGHEST_PROTOCOL))
            except OSError as exc:
                self._pending.pop(req, None)
                raise ProxyWorkerError(f"the proxy worker is gone ({exc})") from None
        if not pending.done.wait(timeout):
            with self._lock:
                self._pending.pop(req, None)
            raise ProxyWorkerError(f"the proxy worker did not answer {parts[0]!r} within {timeout:g}s")
        if not pending.ok:
            raise ProxyWorkerError(str(pending.value))
        return pending.value

    def open(
        self, endpoint: Endpoint, emit: EventSink, *, run_seed: int = 0, port: int = 0, host: str = "127.0.0.1"
    ) -> RemoteListener:
        lid = next(self._ids)
        listener = RemoteListener(self, lid, endpoint, emit)
        with self._lock:
            self._emitters[lid] = listener.on_event
            self._listeners[lid] = listener
        try:
            listener.host, listener.port = self.request("open", lid, endpoint, run_seed, host, port)
        except ProxyWorkerError:
            with self._lock:
                self._emitters.pop(lid, None)
                self._listeners.pop(lid, None)
            raise
        return listener

    def open_mock(self, endpoint: Endpoint, config: MockConfig, emit: EventSink, handler: MockHandler) -> RemoteMock:
        """Serve a mock on endpoint's host:port in the worker; `handler` computes its dynamic answers."""
        lid = next(self._ids)
        mock = RemoteMock(self, lid, endpoint)
        with self._lock:
            self._emitters[lid] = emit
            self._handlers[lid] = handler
        try:
            mock.host, mock.port = self.request("mock", lid, endpoint, config.wire())
        except ProxyWorkerError:
            self.forget(lid)
            raise
        return mock

    def sync(self, timeout: float = 5.0) -> None:
        """Every event emitted before now is in its listener's emit when this returns."""
        if self.dead is None:
            self.request("sync", timeout=timeout)

    def close(self) -> None:
        self._closing = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5.0)
        self._sock.close()
        self._reader.join(5.0)
        with self._lock:
            calls, self._calls = list(self._calls.values()), {}
        for pending in calls:
            pending.put(None)

    # -- the reader ----------------------------------------------------------------------------

    def _read(self) -> None:
        why = "its socket closed"
        try:
            why = self._read_until_closed()
        except BaseException as exc:  # never end silently: waiting requests would each time out
            why = f"{type(exc).__name__}: {exc}"
        finally:
            self._dead(why)

    def _read_until_closed(self) -> str:
        while True:
            try:
                data = self._sock.recv(MAX_MESSAGE)
            except OSError as exc:
                return str(exc)
            if not data:
                return "its socket closed"
            message = pickle.loads(data)
            if message[0] == "events":
                for lid, type, fields in message[1]:
                    emit = self._emitters.get(lid)
                    if emit is not None:
                        try:
                            emit(type, fields)
                        except Exception:
                            pass  # the trace's own errors are the trace's; the reader goes on
                continue
            if message[0] == "call":
                self._call(*message[1:])
                continue
            with self._lock:
                pending = self._pending.pop(message[1], None)
            if pending is not None:
                pending.ok = message[0] == "ok"
                pending.value = message[2]
                pending.done.set()

    def _call(self, cid: int, lid: int, handler_id: int, request: dict[str, Any]) -> None:
        """Hand a mock's dynamic call to that mock's thread: off the reader, which must go on
        taking events (a handler may query the trace)."""
        with self._lock:
            pending = self._calls.get(lid)
            handler = self._handlers.get(lid)
            if pending is None and handler is not None:
                pending = self._calls[lid] = queue.SimpleQueue()
                # Started off the reader, so in no test's context (contextvars): a handler that
                # needs its test's brings it itself (runner/mocks.py, TestHost._in_mock_handler).
                thread = threading.Thread(
                    target=self._serve_calls, args=(handler, pending), name=f"faultbox-mock-{lid}", daemon=True
                )
                thread.start()
        if pending is None:
            self._answer(cid, ("error", "the mock was stopped"))
        else:
            pending.put((cid, handler_id, request))

    def _serve_calls(
        self, handler: MockHandler, pending: queue.SimpleQueue[tuple[int, int, dict[str, Any]] | None]
    ) -> None:
        while True:
            call = pending.get()
            if call is None:
                return
            cid, handler_id, request = call
            try:
                outcome = handler(handler_id, request)
            except BaseException as exc:  # the handler's own errors come back as answers
                outcome = ("error", f"{type(exc).__name__}: {exc}")
            self._answer(cid, outcome)

    def _answer(self, cid: int, outcome: tuple[str, Any]) -> None:
        data = pickle.dumps(("answer", cid, *outcome), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if self.dead is None:
                try:
                    self._sock.sendall(data)
                except OSError:
                    pass

    def _dead(self, why: str) -> None:
        code = self.proc.poll()
        if code is not None and code != 0:
            why = f"it exited with code {code}"
        with self._lock:
            self.dead = why
            pending, self._pending = list(self._pending.values()), {}
        for p in pending:
            p.value = f"the proxy worker is gone ({why})"
            p.done.set()
        if not self._closing and self.on_dead is not None:
            self.on_dead(why)

    def forget(self, lid: int) -> None:
        with self._lock:
            self._emitters.pop(lid, None)
            self._listeners.pop(lid, None)
            self._handlers.pop(lid, None)
            pending = self._calls.pop(lid, None)
        if pending is not None:
            pending.put(None)


class RemoteMock:
    """A mock interface served in the worker."""

    def __init__(self, hub: RemoteHub, lid: int, endpoint: Endpoint) -> None:
        self.hub = hub
        self.lid = lid
        self.endpoint = endpoint
        self.host = endpoint.target_host
        self.port = endpoint.target_port
        self._closed = False

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.hub.request("close", self.lid, timeout=15.0)
        except ProxyWorkerError:
            pass
        self.hub.forget(self.lid)


class RemoteListener:
    """The proxy of one interface, in the worker."""

    def __init__(self, hub: RemoteHub, lid: int, endpoint: Endpoint, emit: EventSink) -> None:
        self.hub = hub
        self.lid = lid
        self.endpoint = endpoint
        self.emit = emit
        self.host = "127.0.0.1"
        self.port = 0
        self.warnings: list[str] = []
        self._closed = False

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def on_event(self, type: str, fields: dict[str, str]) -> None:
        if type == "proxy_warning":
            self.warnings.append(fields.get("warning", ""))
        self.emit(type, fields)

    def set_rules(self, rules: Sequence[Installed]) -> dict[int, tuple[int, int, int]]:
        stats: dict[int, tuple[int, int, int]] = self.hub.request("rules", self.lid, list(rules))
        return stats

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.hub.request("close", self.lid)
        except ProxyWorkerError:
            pass
        self.hub.forget(self.lid)
