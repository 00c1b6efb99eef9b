"""Services, interfaces, healthchecks, and the order in which services start."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from faultbox.errors import Code, FaultboxError, SourceLocation
from faultbox.model.mock import MockConfig


@dataclass(frozen=True, slots=True)
class Interface:
    """`proxy`: consumers reach it through a fault proxy (protocol faults need one); `record`: its
    proxy records every request and reply as a `proxy_request` event."""

    name: str
    protocol: str
    port: int
    host: str = "127.0.0.1"
    proxy: bool = True
    record: bool = False

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Healthcheck:
    """`kind` is "tcp" (connect to host:port), "http" (GET until 2xx/3xx) or "protocol" (a managed
    server's own readiness probe)."""

    kind: str
    target: str
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Decoder:
    kind: str  # "json" | "logfmt" | "regex" | "raw"
    pattern: str = ""


@dataclass(frozen=True, slots=True)
class Observe:
    stream: str  # "stdout" | "stderr"
    decoder: Decoder = Decoder("raw")


@dataclass(frozen=True, slots=True)
class Op:
    """A named operation: syscalls plus an optional path glob (`ops={"persist": op(...)}`)."""

    name: str
    syscalls: tuple[str, ...]
    path: str | None = None


@dataclass(frozen=True, slots=True)
class Managed:
    """A real server started from a stdlib helper (postgres, redis, kafka) instead of a user binary.
    `options` are the helper's settings; the runner turns them into a process description."""

    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    argv: tuple[str, ...]
    interfaces: tuple[Interface, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    healthcheck: Healthcheck | None = None
    observe: tuple[Observe, ...] = ()
    cwd: str = "."
    user: str | None = None
    ops: Mapping[str, Op] = field(default_factory=dict)
    stop_grace: float = 2.0
    managed: Managed | None = None
    seed: Any = None  # a spec callable run after the service is freshly started (schema, data)
    # reset: run after seed on a fresh start; on a kept one (reuse), run instead of seed
    reset: Any = None
    reuse: bool = False  # kept running from one test to the next (in one run or test worker)
    mocks: Mapping[str, MockConfig] = field(default_factory=dict)  # interface -> how it answers
    location: SourceLocation | None = None

    @property
    def is_mock(self) -> bool:
        """A mock_service(): served by faultbox itself, no process."""
        return bool(self.mocks)

    def interface(self, name: str) -> Interface | None:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        return None


class DependencyCycle(FaultboxError, ValueError):
    code = Code.SPEC_DEPENDENCY_CYCLE

    def __init__(self, cycle: list[str]) -> None:
        super().__init__(" -> ".join(cycle))
        self.cycle = cycle


def start_order(services: Iterable[Service]) -> list[Service]:
    """Services in `depends_on` order (dependencies first; declaration order among equals).

    Raises DependencyCycle naming the cycle, or KeyError for a dependency that is not declared."""
    by_name = {s.name: s for s in services}
    order: list[Service] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done
    path: list[str] = []

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            start = path.index(name)
            raise DependencyCycle([*path[start:], name])
        state[name] = 1
        path.append(name)
        for dep in by_name[name].depends_on:
            if dep not in by_name:
                raise KeyError(dep)
            visit(dep)
        path.pop()
        state[name] = 2
        order.append(by_name[name])

    for name in by_name:
        visit(name)
    return order
