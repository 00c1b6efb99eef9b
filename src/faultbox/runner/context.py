"""Resources that live for a whole run: the supervisor, the reaper, cgroups, the I/O pump, the
run's temporary directory. Every one is created here and closed in close(), in reverse order."""

from __future__ import annotations

import itertools
import os
import secrets
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
    def __init__(self, spec: Spec, seed: int, *, keep_workdir: bool = False, concurrent_start: bool = False) -> None:
        self.spec = spec
        self.seed = seed
        self.keep_workdir = keep_workdir
        self.concurrent_start = concurrent_start  # --concurrent-start: services start as their depends_on allow
        # The reaper first, told of every directory and cgroup before it is made: a runner killed at
        # any moment leaves nothing behind.
        self.reaper = ReaperClient()
        self.workdir = self._make_workdir()
        self._svc_ids = itertools.count(1)
        self._lock = threading.Lock()
        # Where syscall events and supervisor notices go: the running test, if any.
        self.syscall_sink: SyscallSink | None = None
        self.closed_sink: Callable[[int, str], None] | None = None
        self.dead_sink: Callable[[str], None] | None = None
        self.supervisor_dead: str | None = None
        self.cgroups = CgroupTree(announce=self.reaper.watch_cgroup)
        self.pump = IoPump()
        self.managed = ManagedServers(self.workdir)
        self._proxy_hub: RemoteHub | None = None
        self.proxy_dead: str | None = None
        self.proxy_dead_sink: Callable[[str], None] | None = None
        # reuse=True services between tests (runner/services.py's Kept), by name; stopped on close.
        self.kept: dict[str, Any] = {}
        self.supervisor: SupervisorClient | None = None
        if any(spec.syscalls.values()):
            self.supervisor = self._new_supervisor()

    def _make_workdir(self) -> str:
        """mkdtemp's faultbox-run-XXXX, with the reaper told of it before it exists."""
        while True:
            path = os.path.join(tempfile.gettempdir(), f"faultbox-run-{secrets.token_hex(6)}")
            if not self.keep_workdir:
                self.reaper.watch_dir(path)
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:  # someone else's: not ours to remove
                self.reaper.forget_dir(path)
                continue
            # Servers that refuse to run as root (PostgreSQL) must be able to reach their data dirs.
            os.chmod(path, 0o711)
            return path

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
        # The directory goes before the reaper's goodbye: after "bye" it no longer removes it.
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.reaper.close()

    def renew_supervisor(self) -> None:
        """A supervisor that died errored the test it died in; the next test gets a new one (as it
        gets a new proxy worker). A kept service it supervised is stopped, not adopted: nothing is
        left to answer its intercepted syscalls."""
        old = self.supervisor
        if old is None or (self.supervisor_dead is None and old.dead is None and old.proc.poll() is None):
            return  # alive (its reader may not have seen it die yet: its process tells)
        for name, kept in list(self.kept.items()):
            if kept.service.svc_id is not None:
                del self.kept[name]
                try:
                    kept.stop()
                except Exception:
                    pass
        old.close()
        self.supervisor_dead = None  # before the new one exists: its own death must not be erased
        self.supervisor = self._new_supervisor()

    def _new_supervisor(self) -> SupervisorClient:
        client: SupervisorClient | None = None

        def on_dead(why: str) -> None:
            if self.supervisor is client:  # not a replaced one's reader, late
                self._on_dead(why)

        client = SupervisorClient(self._on_events, self._on_closed, on_dead)
        return client

    def _close_supervisor(self) -> None:
        if self.supervisor is not None:
            self.supervisor.close()

    def stats(self) -> dict[str, Any]:
        return self.supervisor.stats() if self.supervisor is not None and self.supervisor_dead is None else {}
