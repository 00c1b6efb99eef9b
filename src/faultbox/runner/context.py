"""Resources that live for a whole run: the supervisor, the reaper, cgroups, the I/O pump, the
run's temporary directory. Every one is created here and closed in close(), in reverse order."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from faultbox.engine.cgroup import CgroupTree
from faultbox.engine.client import EventBatch, SupervisorClient
from faultbox.engine.reaper import ReaperClient
from faultbox.proxy.remote import RemoteHub
from faultbox.runner.managed import ManagedServers
from faultbox.runner.pump import IoPump
from faultbox.spec import Spec

SyscallSink = Callable[[EventBatch], None]


class RunContext:
    def __init__(self, spec: Spec, seed: int, *, keep_workdir: bool = False) -> None:
        self.spec = spec
        self.seed = seed
        self.keep_workdir = keep_workdir
        self.workdir = tempfile.mkdtemp(prefix="faultbox-run-")
        # Servers that refuse to run as root (PostgreSQL) must be able to reach their data dirs.
        os.chmod(self.workdir, 0o711)
        self._svc_ids = itertools.count(1)
        self._lock = threading.Lock()
        # Where syscall events and supervisor notices go: the running test, if any.
        self.syscall_sink: SyscallSink | None = None
        self.closed_sink: Callable[[int, str], None] | None = None
        self.dead_sink: Callable[[str], None] | None = None
        self.supervisor_dead: str | None = None
        self.reaper = ReaperClient()
        if not keep_workdir:
            self.reaper.watch_dir(self.workdir)
        self.cgroups = CgroupTree()
        if self.cgroups.base is not None:
            self.reaper.watch_cgroup(str(self.cgroups.base))
        self.pump = IoPump()
        self.managed = ManagedServers(self.workdir)
        self._proxy_hub: RemoteHub | None = None
        self.proxy_dead: str | None = None
        self.proxy_dead_sink: Callable[[str], None] | None = None
        # reuse=True services between tests (runner/services.py's Kept), by name; stopped on close.
        self.kept: dict[str, Any] = {}
        self.supervisor: SupervisorClient | None = None
        if any(spec.syscalls.values()):
            self.supervisor = SupervisorClient(self._on_events, self._on_closed, self._on_dead)

    def proxy_hub(self) -> RemoteHub:
        """The run's proxy worker, started on first use."""
        with self._lock:
            if self._proxy_hub is not None and self._proxy_hub.dead is not None:
                # The worker died in an earlier test (which errored for it): later tests get a new one.
                self._proxy_hub.close()
                self._proxy_hub = None
                self.proxy_dead = None
            if self._proxy_hub is None:
                self._proxy_hub = RemoteHub(self._on_proxy_dead)
            return self._proxy_hub

    def proxy_sync(self, timeout: float) -> None:
        """Every proxy event emitted before now is in the trace when this returns."""
        hub = self._proxy_hub
        if hub is not None and self.proxy_dead is None:
            hub.sync(timeout)

    def _on_proxy_dead(self, why: str) -> None:
        self.proxy_dead = why
        sink = self.proxy_dead_sink
        if sink is not None:
            sink(why)

    def _close_proxies(self) -> None:
        if self._proxy_hub is not None:
            self._proxy_hub.close()

    def next_svc_id(self) -> int:
        with self._lock:
            return next(self._svc_ids)

    def _on_events(self, batch: EventBatch) -> None:
        sink = self.syscall_sink
        if sink is not None:
            sink(batch)

    def _on_closed(self, svc_id: int, why: str) -> None:
        sink = self.closed_sink
        if sink is not None:
            sink(svc_id, why)

    def _on_dead(self, why: str) -> None:
        self.supervisor_dead = why
        sink = self.dead_sink
        if sink is not None:
            sink(why)

    @staticmethod
    def port_holder(port: int) -> str | None:
        """None when the port is free; else " by <who>" (or "") for the error message."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return None
            except OSError:
                pass
        try:
            from faultbox.deps.base import port_holder

            who = port_holder(port)
        except Exception:
            who = None
        return f" by {who}" if who else ""

    def _stop_kept(self) -> None:
        kept, self.kept = list(self.kept.values()), {}
        for service in reversed(kept):
            try:
                service.stop()
            except Exception:
                pass

    def close(self) -> None:
        for step in (
            self._stop_kept,
            self._close_proxies,
            self._close_supervisor,
            self.pump.close,
            self.managed.close,
            self.cgroups.close,
        ):
            try:
                step()
            except Exception:
                pass
        self.reaper.close()
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _close_supervisor(self) -> None:
        if self.supervisor is not None:
            self.supervisor.close()

    def stats(self) -> dict[str, Any]:
        return self.supervisor.stats() if self.supervisor is not None and self.supervisor_dead is None else {}
