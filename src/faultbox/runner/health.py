"""Readiness: one probe attempt per healthcheck kind, and the wait that races the process's exit."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from faultbox._util.tls import client_context
from faultbox.model.service import Healthcheck

Probe = Callable[[float], None]  # one attempt with a timeout; raises with the reason when not ready


class NotReady(Exception):
    pass


def probe_for(hc: Healthcheck) -> Probe:
    if hc.kind == "tcp":
        host, _, port = hc.target.rpartition(":")

        def tcp_probe(timeout: float) -> None:
            try:
                socket.create_connection((host, int(port)), timeout=timeout).close()
            except OSError as exc:
                raise NotReady(f"connect {hc.target}: {exc.strerror or exc}") from None

        return tcp_probe
    if hc.kind == "http":
        import httpx  # here: a worker whose services have no HTTP healthcheck starts faster without it

        # One client for every attempt (no connection kept between them: each attempt is a new one).
        client = httpx.Client(verify=client_context(), limits=httpx.Limits(max_keepalive_connections=0))

        def http_probe(timeout: float) -> None:
            try:
                resp = client.get(hc.target, timeout=timeout)
            except httpx.HTTPError as exc:
                raise NotReady(f"GET {hc.target}: {type(exc).__name__}: {exc}") from None
            if not 200 <= resp.status_code < 400:
                raise NotReady(f"GET {hc.target}: status {resp.status_code}")

        return http_probe
    raise ValueError(f"no probe for healthcheck kind {hc.kind!r}")


def wait_ready(probe: Probe, deadline: float, exited: Callable[[], bool]) -> str | None:
    """Probe until it passes (None), the process exits ("exited"), or the deadline ("timeout: ...").

    Polls fast at first (services that start in milliseconds should not wait for a slow tick)."""
    pause = 0.001
    last = "no attempt"
    while True:
        if exited():
            return "exited"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return f"timeout: {last}"
        try:
            probe(min(max(remaining, 0.05), 2.0))
            return None
        except Exception as exc:  # any probe failure means "not yet"
            last = str(exc) or type(exc).__name__
        time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 2, 0.05)
