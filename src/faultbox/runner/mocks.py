"""Mock services in a test: served by the proxy worker on their interfaces' own ports, with their
`dynamic(fn)` answers computed here, where the spec's functions live.

A handler runs on a thread of the proxy client's pool while the system under test waits for its
answer. It sees the running test like any spec code, and queries the trace as a monitor does,
without waiting for the event sources: the mock's earlier requests are there (the worker calls one
handler of a mock at a time, each after the previous request's event), which is how a mock keeps
state across requests. What it raises, or a value
that is not a response, answers 500 and fails the test with the handler's own line.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from faultbox._util.frozen import freeze
from faultbox.model.mock import Dynamic, MockResponse
from faultbox.model.service import Service
from faultbox.proxy.remote import MockHandler, ProxyWorkerError, RemoteHub, RemoteMock
from faultbox.proxy.session import Endpoint
from faultbox.spec.args import type_name
from faultbox.spec.compile import describe_exception

Emit = Callable[..., object]  # (type, service, fields, data, *, mirrored)


@dataclass(frozen=True, slots=True)
class HandlerFailure:
    message: str
    location: str


class MockHandlers:
    """The dynamic handlers of a test's mocks; remembers the first one that failed."""

    def __init__(self, context: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext) -> None:
        self.context = context  # entered around every handler call (the host skips its barrier there)
        self.failure: HandlerFailure | None = None
        self._lock = threading.Lock()

    def for_service(self, svc: Service) -> MockHandler:
        dynamics: dict[int, Dynamic] = {}
        for config in svc.mocks.values():
            dynamics.update(config.dynamics())

        def handle(handler_id: int, request: dict[str, Any]) -> tuple[str, Any]:
            dyn = dynamics.get(handler_id)
            if dyn is None or dyn.fn is None:
                return ("error", f"{svc.name}: no dynamic handler #{handler_id}")
            try:
                with self.context():
                    result = dyn.fn(freeze(request))
            except BaseException as exc:
                message, where = describe_exception(exc)
                return (
                    "error",
                    self._failed(
                        f"mock {svc.name}: dynamic handler {dyn.name} failed: {message}", where or dyn.location
                    ),
                )
            if isinstance(result, MockResponse):
                return ("ok", result)
            return (
                "error",
                self._failed(
                    f"mock {svc.name}: dynamic handler {dyn.name} returned {type_name(result)}, not a response "
                    "(return json_response(...), text_response(...), status_only(...))",
                    dyn.location,
                ),
            )

        return handle

    def _failed(self, message: str, location: str) -> str:
        with self._lock:
            if self.failure is None:
                self.failure = HandlerFailure(message, location)
        return f"{message} ({location})" if location else message


def serve(hub: RemoteHub, svc: Service, emit: Emit, handler: MockHandler) -> list[RemoteMock]:
    """Serve every interface of a mock; closes what it opened if one fails (ProxyWorkerError)."""
    served: list[RemoteMock] = []
    try:
        for iface in svc.interfaces:
            endpoint = Endpoint(svc.name, iface.name, iface.protocol, iface.host, iface.port)
            served.append(hub.open_mock(endpoint, svc.mocks[iface.name], _to_trace(svc.name, emit), handler))
    except (ProxyWorkerError, OSError):
        for mock in served:
            mock.close()
        raise
    return served


def _to_trace(service: str, emit: Emit) -> Callable[[str, dict[str, str]], None]:
    def to_trace(type: str, fields: dict[str, str]) -> None:
        if type == "mock":
            emit(type, service, fields, _body_data(fields), mirrored=False)
        else:
            emit(type, service, fields)

    return to_trace


def _body_data(fields: Mapping[str, str]) -> Any:
    """`e.data` of a mock event: the request's JSON body, decoded (otherwise the fields)."""
    body = fields.get("body")
    if not body or body[0] not in "[{":
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
