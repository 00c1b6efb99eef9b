"""Steps: the protocol clients a test's steps go through, and the fields of the step_send and
step_recv events that frame each step. TestHost.step orchestrates a step (deadline, barrier,
clocks); what a step sends and how it is recorded lives here."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

from faultbox._util.frozen import thaw
from faultbox.model.response import Response
from faultbox.protocols import StepClient, make_client
from faultbox.runner.context import RunContext
from faultbox.runner.parallel import current_branch
from faultbox.runner.proxies import ProxySet
from faultbox.runner.services import RunningService
from faultbox.runner.wiring import rewrite
from faultbox.spec.args import ArgError


class StepClients:
    """One client per (service, interface, parallel() branch): two branches are two concurrent
    clients of a service, as two users of the system would be. Steps reach an interface through its
    proxy, so that protocol faults reach them too."""

    def __init__(self, ctx: RunContext, proxies: ProxySet, test_name: str) -> None:
        self.ctx = ctx
        self.proxies = proxies
        self.test_name = test_name
        self._clients: dict[tuple[str, str, str], StepClient] = {}
        self._lock = threading.Lock()

    def get(self, rs: RunningService, interface: str) -> StepClient:
        key = (rs.name, interface, current_branch())
        with self._lock:
            client = self._clients.get(key)
        if client is None:
            iface = rs.model.interface(interface)
            assert iface is not None
            options = self.ctx.managed.options(rs.model, rs.plan, self.test_name)
            host, port = iface.host, iface.port
            proxy = self.proxies.by_target.get(f"{rs.name}.{interface}")
            if proxy is not None:
                host, port = proxy.host, proxy.port
                if isinstance(options.get("endpoint"), str):
                    options["endpoint"] = rewrite(options["endpoint"], {iface.port: proxy.addr})
            try:
                client = make_client(iface.protocol, host, port, options)
            except ValueError as exc:
                raise ArgError(str(exc)) from None
            with self._lock:
                self._clients[key] = client
        return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


_SENT = ("path", "sql", "key", "topic", "data", "value", "pattern", "field", "body", "headers", "params", "cmd", "args")


def send_fields(target: str, interface: str, protocol: str, method: str, args: Mapping[str, Any]) -> dict[str, str]:
    # `target` is the reference's name for the service a step talks to (the event's service here).
    fields = {"target": target, "interface": interface, "protocol": protocol, "method": method}
    for key in _SENT:
        value = args.get(key)
        if value is not None and not (isinstance(value, (dict, list, tuple)) and not value):  # headers={}: nothing sent
            fields[key] = _text(value)[:200]
    return fields


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(thaw(value), separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return repr(value)


def recv_fields(target: str, interface: str, method: str, result: Any, start: float, error: str = "") -> dict[str, str]:
    # The step's own duration: the barrier that follows it is the trace's business, not the step's.
    took = result.duration_ms if isinstance(result, Response) else int((time.monotonic() - start) * 1000)
    fields = {"target": target, "interface": interface, "method": method, "duration_ms": str(took)}
    if error:
        fields["ok"] = "false"
        fields["error"] = error[:500]
    if isinstance(result, Response):
        fields["ok"] = "true" if result.ok else "false"
        if result.status:
            fields["status"] = fields["status_code"] = str(result.status)  # status_code: the reference's name
            if not 200 <= result.status < 300:
                fields["body"] = result.body[:2048]
        if result.error:
            fields["error"] = result.error[:500]
    elif isinstance(result, str):
        fields["ok"] = "true"
        fields["reply"] = result[:200]
    fields["success"] = fields["ok"]  # the reference's name for ok
    return fields
