"""Fixtures for proxy tests: a real hub and listeners in front of real servers, with events
collected and rules installed as the runner would (`workdir` and `serve` come from
tests/integration/conftest.py)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from faultbox.model.proxy import ProxyFault, ProxyRule
from faultbox.proxy.hub import Listener, ProxyHub
from faultbox.proxy.rules import Installed
from faultbox.proxy.session import Endpoint

_ids = itertools.count(1)


@dataclass
class Proxied:
    """A listener in front of a real server, with the events it emitted."""

    listener: Listener
    events: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return self.listener.port

    def of(self, type: str) -> list[dict[str, str]]:
        with self.lock:
            return [f for t, f in self.events if t == type]

    def install(self, *faults: ProxyFault) -> dict[int, tuple[int, int, int]]:
        """Install these faults (first decides first), replacing what was installed."""
        ep = self.listener.endpoint
        rules = [
            Installed(next(_ids), ProxyRule(ep.service, ep.interface, ep.protocol, f), f"test/{i}")
            for i, f in enumerate(faults)
        ]
        return self.listener.set_rules(rules)

    def clear(self) -> dict[int, tuple[int, int, int]]:
        return self.listener.set_rules([])


@pytest.fixture(scope="module")
def hub() -> Iterator[ProxyHub]:
    h = ProxyHub()
    yield h
    h.close()


@pytest.fixture
def proxy_to(hub: ProxyHub) -> Iterator[object]:
    """proxy_to(protocol, port, record=False) -> Proxied, closed after the test."""
    opened: list[Listener] = []

    def make(protocol: str, port: int, *, record: bool = False, seed: int = 0) -> Proxied:
        holder: list[Proxied] = []

        def emit(type: str, fields: dict[str, str]) -> None:
            p = holder[0] if holder else None
            if p is not None:
                with p.lock:
                    p.events.append((type, fields))

        ep = Endpoint("svc", "main", protocol, "127.0.0.1", port, record)
        listener = hub.open(ep, emit, run_seed=seed)
        opened.append(listener)
        p = Proxied(listener)
        holder.append(p)
        return p

    yield make
    for listener in opened:
        listener.close()
