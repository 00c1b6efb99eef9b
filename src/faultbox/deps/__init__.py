"""Real data servers as local processes: PostgreSQL, Redis and a Kafka-compatible broker.

Each module's `prepare(workdir, port, ...)` makes a data directory and returns a `ServerPlan`: the
argv, env, cwd and OS user the runner launches, the signal that stops it gracefully, and a `probe()`
that makes one readiness check through the server's own protocol.

    from faultbox.deps import postgres
    plan = postgres.prepare(workdir, free_port())
    # runner: spawn plan.argv as plan.user, loop plan.probe(t) until ready, later plan.stop_signal
"""

from faultbox.deps.base import (
    DependencyError,
    DependencyMissing,
    DependencyNotReady,
    PortInUse,
    ServerPlan,
    free_port,
    port_holder,
    port_in_use,
    wait_ready,
)

__all__ = [
    "DependencyError",
    "DependencyMissing",
    "DependencyNotReady",
    "PortInUse",
    "ServerPlan",
    "free_port",
    "port_holder",
    "port_in_use",
    "wait_ready",
]
