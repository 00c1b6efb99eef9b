"""Mock services in a test: served by the proxy worker on their interfaces' own ports, with their
`dynamic(fn)` answers computed here, where the spec's functions live.

A handler runs on its mock's own thread in the runner while the system under test waits for its
answer. It sees the running test like any spec code, and queries the trace as a monitor does,
without waiting for the event sources: the mock's earlier requests are there (the worker calls one
handler of a mock at a time, each after the previous request's event), which is how a mock keeps
state across requests. What it raises, or a value that is not a response, answers 500 and fails
the test with the handler's own line.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from faultbox._util.frozen import freeze
from faultbox._util.threads import raise_in_thread
from faultbox.errors import SpecFailure
from faultbox.model.mock import MAX_BODY, Dynamic, MockResponse, decode_json
from faultbox.model.service import Service
from faultbox.proxy.mock import DYNAMIC_TIMEOUT, FULL_BODY
from faultbox.proxy.remote import MockHandler, ProxyWorkerError, RemoteHub, RemoteMock
from faultbox.proxy.session import Endpoint
from faultbox.spec.args import type_name
from faultbox.spec.compile import describe_exception

Emit = Callable[..., object]  # (type, service, fields, data, *, mirrored)


@dataclass(frozen=True, slots=True)
class HandlerFailure:
    message: str
    location: str


class HandlerStopped(SpecFailure):
    """Raised into a handler that ran past its time, or still ran when its test ended."""

    def __init__(self, message: str = "the handler was stopped") -> None:  # raised as a class
        super().__init__(message)


class MockHandlers:
    """The dynamic handlers of a test's mocks; remembers the first one that failed. A handler that
    runs past the time its mock waits for it (or past the end of the test) is interrupted, so a
    spec loop cannot keep a thread of the pool for good."""

    def __init__(
        self,
        context: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
        timeout: float = DYNAMIC_TIMEOUT,
    ) -> None:
        # Entered around every handler call, on the proxy's thread that makes it (a thread of no
        # test's context): the host makes itself current there, and skips its barrier.
        self.context = context
        self.timeout = timeout
        self.failure: HandlerFailure | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # thread ident -> (when it is stopped, why it would be)
        self._running: dict[int, tuple[float, str]] = {}
        self._stopped = False
        self._watchdog: threading.Thread | None = None

    def for_service(self, svc: Service) -> MockHandler:
        dynamics: dict[int, tuple[Dynamic, str]] = {}  # handler -> (it, its interface's protocol)
        for config in svc.mocks.values():
            for handler, dyn in config.dynamics().items():
                dynamics[handler] = (dyn, config.protocol)

        def handle(handler_id: int, request: dict[str, Any]) -> tuple[str, Any]:
            found = dynamics.get(handler_id)
            if found is None or found[0].fn is None:
                return ("error", f"{svc.name}: no dynamic handler #{handler_id}")
            dyn, protocol = found
            request.setdefault("data", decode_json(request.get("body", "")))
            try:
                result = self._call(dyn, request)
            except BaseException as exc:
                message, where = describe_exception(exc)
                failed = f"mock {svc.name}: dynamic handler {dyn.name} failed: {message}"
                return ("error", self._failed(failed, where or dyn.location))
            problem = _wrong_answer(result, protocol)
            if problem is None:
                return ("ok", result)
            return ("error", self._failed(f"mock {svc.name}: dynamic handler {dyn.name} {problem}", dyn.location))

        return handle

    def worker_failed(self, service: str, message: str) -> None:
        """A dynamic answer the worker gave up on (no answer in time, a body too big to hand over):
        the system under test saw a 500 the spec did not mean, so the test fails."""
        self._failed(f"mock {service}: {message}", "")

    def _call(self, dyn: Dynamic, request: dict[str, Any]) -> Any:
        ident = threading.get_ident()
        with self._lock:
            if self._stopped:
                raise HandlerStopped("the test has ended")
            self._running[ident] = (time.monotonic() + self.timeout, f"it did not return within {self.timeout:g}s")
            if self._watchdog is None:
                # A plain thread: it runs no spec code, it only interrupts the handlers' threads.
                self._watchdog = threading.Thread(target=self._watch, name="faultbox-mock-watchdog", daemon=True)
                self._watchdog.start()
        try:
            with self.context():
                return dyn.fn(freeze(request))
        except HandlerStopped:
            raise HandlerStopped(self._running.get(ident, (0.0, "it was stopped"))[1]) from None
        finally:
            with self._lock:
                self._running.pop(ident, None)
                raise_in_thread(ident, None)  # take back an interruption not delivered yet

    def _watch(self) -> None:
        """Interrupt handlers past their deadline. One thread for all calls (a timer per call
        halves a mock's dynamic rate). It sleeps until the earliest deadline, and at most one
        timeout: a call that starts meanwhile has its deadline a whole timeout away, so nobody
        needs to wake it."""
        with self._lock:
            while not self._stopped:
                now = time.monotonic()
                for ident, (deadline, why) in list(self._running.items()):
                    if deadline <= now:
                        self._running[ident] = (math.inf, why)
                        raise_in_thread(ident, HandlerStopped)
                deadlines = [deadline for deadline, _ in self._running.values()]
                self._wake.wait(min([*deadlines, now + self.timeout]) - now)

    def stop(self) -> None:
        """The test is over: interrupt the handlers still running, refuse new calls."""
        with self._lock:
            self._stopped = True
            for ident in self._running:
                self._running[ident] = (math.inf, "it still ran when the test ended")
                raise_in_thread(ident, HandlerStopped)
            self._wake.notify()

    def _failed(self, message: str, location: str) -> str:
        with self._lock:
            if self.failure is None and not self._stopped:
                self.failure = HandlerFailure(message, location)
        return f"{message} ({location})" if location else message


def serve(hub: RemoteHub, svc: Service, emit: Emit, handlers: MockHandlers) -> list[RemoteMock]:
    """Serve every interface of a mock; closes what it opened if one fails (ProxyWorkerError)."""
    served: list[RemoteMock] = []
    handler = handlers.for_service(svc)
    try:
        for iface in svc.interfaces:
            endpoint = Endpoint(svc.name, iface.name, iface.protocol, iface.host, iface.port)
            to_trace = _to_trace(svc.name, emit, handlers.worker_failed)
            served.append(hub.open_mock(endpoint, svc.mocks[iface.name], to_trace, handler))
    except (ProxyWorkerError, OSError):
        for mock in served:
            mock.close()
        raise
    return served


def _wrong_answer(result: Any, protocol: str) -> str | None:
    if not isinstance(result, MockResponse):
        return (
            f"returned {type_name(result)}, not a response "
            "(return json_response(...), text_response(...), status_only(...))"
        )
    if result.kind == "bytes" and protocol != "tcp":
        return "returned bytes_response(), which is for TCP mocks; an HTTP mock answers json_response(...) etc."
    if len(result.body) > MAX_BODY:
        return f"answered a body of {len(result.body)} bytes; a mock's answer holds at most {MAX_BODY} bytes"
    return None


def _to_trace(service: str, emit: Emit, failed: Callable[[str, str], None]) -> Callable[[str, dict[str, str]], None]:
    def to_trace(type: str, fields: dict[str, str]) -> None:
        if type != "mock":
            emit(type, service, fields)
            return
        full = fields.pop(FULL_BODY, None) or fields.get("body", "")
        data = decode_json(full) if full.lstrip()[:1] in ("{", "[") else None
        emit(type, service, fields, data if isinstance(data, (dict, list)) else None, mirrored=False)
        problem = fields.get("dynamic_error")
        if problem:
            failed(service, problem)

    return to_trace
