"""Step clients: how a spec's `svc.iface.method(...)` reaches a real service.

Each client maps its library's exceptions to `Response(ok=False, error=...)` at this boundary; a
step never raises for a transport or protocol error (tcp.send is the one exception, as in the
reference: it returns the reply line and raises when there is none).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class StepClient(Protocol):
    def call(self, method: str, args: Mapping[str, Any]) -> Any: ...

    def close(self) -> None: ...


def make_client(protocol: str, host: str, port: int, options: Mapping[str, Any]) -> StepClient:
    """A client for one interface. `options` carries per-service settings (credentials...)."""
    if protocol in ("http", "http2"):
        from faultbox.protocols.http import HttpClient

        return HttpClient(host, port)
    if protocol == "tcp":
        from faultbox.protocols.tcp import TcpClient

        return TcpClient(host, port)
    if protocol == "postgres":
        from faultbox.protocols.postgres import PostgresClient

        return PostgresClient(host, port, options)
    if protocol == "redis":
        from faultbox.protocols.redis import RedisClient

        return RedisClient(host, port, options)
    if protocol == "kafka":
        from faultbox.protocols.kafka import KafkaClient

        return KafkaClient(host, port, options)
    raise ValueError(f"no step client for protocol {protocol!r}")
