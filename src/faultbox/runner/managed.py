"""Real servers declared with the stdlib helpers (postgres, redis, kafka): their process plans and
the event sources that watch them (WAL for PostgreSQL, topics for Kafka)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from faultbox.deps import DependencyError, ServerPlan
from faultbox.errors import Code, InfraError
from faultbox.model.service import Service

Emit = Callable[[str, str, dict[str, str], dict[str, object] | None], None]


class Source(Protocol):
    def start(self) -> None: ...

    def barrier(self, timeout: float) -> None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, int]: ...


class ManagedServers:
    def __init__(self, workdir: str) -> None:
        self.workdir = workdir

    def plan(self, svc: Service, test_dir: str) -> ServerPlan:
        assert svc.managed is not None
        kind, options = svc.managed.kind, dict(svc.managed.options)
        port = svc.interfaces[0].port if svc.interfaces else 0
        where = os.path.join(test_dir, svc.name)
        try:
            if kind == "postgres":
                from faultbox.deps import postgres

                return postgres.prepare(
                    where,
                    port,
                    database=options.get("database", "postgres"),
                    user=options.get("user", "postgres"),
                    password=options.get("password"),
                    settings=options.get("settings", {}),
                )
            if kind == "redis":
                from faultbox.deps import redis

                return redis.prepare(
                    where,
                    port,
                    appendonly=options.get("appendonly", True),
                    appendfsync=options.get("appendfsync", "always"),
                    password=options.get("password"),
                )
            if kind == "kafka":
                from faultbox.deps import kafka

                return kafka.prepare(where, port)
        except DependencyError as exc:  # its code says which: missing, port in use, ...
            raise InfraError(exc.code, f"{svc.name}: {exc}") from None
        raise InfraError(Code.LAUNCH_FAILED, f"{svc.name}: unknown server kind {kind!r}")

    def sources(self, svc: Service, plan: ServerPlan, emit: Emit) -> list[Source]:
        """Event sources to start once the server is ready."""
        assert svc.managed is not None
        options = svc.managed.options
        if svc.managed.kind == "postgres" and options.get("wal", True):
            from faultbox.sources.wal import WalSource

            return [WalSource(plan.endpoint, svc.name, emit)]
        if svc.managed.kind == "kafka" and options.get("topics_observed", True):
            from faultbox.sources.topic import TopicSource

            topics: Any = options.get("topics")
            return [TopicSource(plan.endpoint, svc.name, emit, topics=list(topics) if topics else None)]
        return []

    def state(self, svc: Service, plan: ServerPlan) -> dict[str, str] | None:
        """The server's data, summarised to compare a kept server's state after its reset with a
        fresh one's after its seed; None when faultbox cannot read it for this kind of server."""
        assert svc.managed is not None
        if svc.managed.kind == "postgres":
            from faultbox.deps import postgres

            return postgres.state(plan.endpoint)
        if svc.managed.kind == "redis":
            from faultbox.deps import redis

            return redis.state(plan.endpoint)
        return None  # a broker's messages cannot be deleted: nothing to compare

    def options(self, svc: Service, plan: ServerPlan | None, test_name: str) -> dict[str, Any]:
        """What the step clients of a service need: the helper's options (credentials), the
        server's endpoint (DSN, URL, bootstrap) when it is a managed server, the service's env (a
        user-declared database passes POSTGRES_USER etc. there), and the test's name."""
        out: dict[str, Any] = dict(svc.managed.options) if svc.managed else {}
        out["env"] = dict(svc.env)
        out["test_name"] = test_name
        if plan is not None:
            out["endpoint"] = plan.endpoint
        return out

    def close(self) -> None:
        pass
