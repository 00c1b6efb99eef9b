"""A test's event ingestion: what turns the run's raw notices into the test's trace, in causal
order, and keeps the trace level with the scenario.

- translation: the supervisor's syscall batches become `syscall` events (service names, the fault
  rule that decided, the real address behind a proxy);
- the causal flushes: before a log line, a row change or a topic message enters the trace, what
  causally precedes it is flushed (runner/causal.py);
- the barrier: after each step, every event the step caused is in the trace before it returns;
- the run-level sinks (syscalls, a supervisor or proxy worker that died) routed to this test while
  it runs, and the infrastructure error they may raise.

TestHost (runner/host.py) owns one per test and offers it to spec code through the Host protocol.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from faultbox.engine.client import EventBatch, SupervisorError
from faultbox.errors import Code, InfraError
from faultbox.model.event import SOURCE_ERROR, Event
from faultbox.model.fault import SyscallRule
from faultbox.runner.causal import Presync
from faultbox.runner.context import RunContext
from faultbox.runner.faults import ActiveRule
from faultbox.runner.proxies import ProxySet
from faultbox.runner.services import ServiceSet
from faultbox.sources import ServerDown
from faultbox.trace.log import TraceLog

BARRIER_TIMEOUT = 15.0
_SOURCE_BARRIER_TIMEOUT = 5.0  # a database restarting after a PANIC is back in well under a second


class TestEvents:
    __test__ = False  # not a pytest test class

    def __init__(
        self,
        ctx: RunContext,
        log: TraceLog,
        services: ServiceSet,
        proxies: ProxySet,
        rules: Callable[[], Mapping[int, ActiveRule]],
    ) -> None:
        self.ctx = ctx
        self.log = log
        self.services = services
        self.proxies = proxies
        self.rules = rules  # the test's active fault rules by id: a syscall event names its rule
        self.infra_error: InfraError | None = None
        self.svc_names: dict[int, str] = {}  # supervisor id -> service, while the services run
        self.proxy_ports: dict[int, str] = {}  # proxy port -> the real address behind it
        self.syscalls_flushed = Presync(self._sync_supervisor)
        self.wal_flushed = Presync(self._flush_wal)
        self.proxy_flushed = Presync(self._sync_proxies)
        self._barrier_lock = threading.Lock()
        self._handler_thread = threading.local()

    def emit(
        self, type: str, service: str, fields: Mapping[str, str], data: Any = None, *, mirrored: bool = True
    ) -> Event:
        return self.log.append(Event(type, service, dict(fields), data, mirrored=mirrored))

    # -- the run's sinks, routed to this test ------------------------------------------------

    def attach(self) -> None:
        """Route run-level notices (syscall events, supervisor trouble) to this test."""
        self.ctx.pump.before_lines = self.before_lines
        self.ctx.syscall_sink = self.ingest_syscalls
        self.ctx.closed_sink = self._on_listener_closed
        self.ctx.dead_sink = self._on_supervisor_dead
        self.ctx.proxy_dead_sink = self._on_proxy_dead
        if self.ctx.supervisor_dead:
            self._on_supervisor_dead(self.ctx.supervisor_dead)

    def detach(self) -> None:
        self.ctx.pump.before_lines = None
        self.ctx.syscall_sink = None
        self.ctx.closed_sink = None
        self.ctx.dead_sink = None
        self.ctx.proxy_dead_sink = None

    def services_started(self) -> None:
        self.svc_names = {v: k for k, v in self.services.svc_ids.items()}

    def services_gone(self) -> None:
        self.svc_names = {}

    # -- translation -----------------------------------------------------------------------

    def ingest_syscalls(self, batch: EventBatch) -> None:
        names = self.svc_names
        by_id = self.rules()
        append = self.log.append
        proxy_ports = self.proxy_ports
        for svc_id, ts, pid, tid, syscall, decision, path, addr, rule_id, late_ms in batch:
            service = names.get(svc_id)
            if service is None:
                continue  # a late event of a service from an earlier test
            fields = {"syscall": syscall, "pid": str(pid), "decision": decision}
            if tid != pid:
                fields["tid"] = str(tid)
            if path is not None:
                fields["path"] = path
            if addr is not None:
                fields["addr"] = addr
                if proxy_ports:
                    real = proxy_ports.get(_port_of(addr))
                    if real is not None:  # the call reached the interface through its proxy
                        fields["addr"] = real
                        fields["proxy"] = addr
            if rule_id >= 0:
                active = by_id.get(rule_id)
                if active is not None and not active.internal and isinstance(active.rule, SyscallRule):
                    rule = active.rule
                    fields["fault"] = rule.keyword
                    if rule.action.label:
                        fields["label"] = rule.action.label
                    if rule.op:
                        fields["op"] = rule.op
                    if rule.action.delay:
                        fields["latency_ms"] = f"{rule.action.delay * 1000:g}"
                    if late_ms:
                        fields["late_ms"] = f"{late_ms:g}"
                    if active.assumption:
                        fields["assumption"] = active.assumption
            append(Event("syscall", service, fields, ts=ts))

    # -- trouble of the machinery ------------------------------------------------------------

    def _on_listener_closed(self, svc_id: int, why: str) -> None:
        service = self.svc_names.get(svc_id)
        if service is None:
            return
        rs = self.services.running.get(service)
        if why != "closed":
            self.infra(f"the syscall supervisor lost {service}: {why}")
            return
        if rs is not None and not rs.stopping:
            # All tasks of a service gone closes its listener; a live service must not lose it.
            def check() -> None:
                if rs.alive() and not rs.stopping:
                    self.infra(f"the syscall supervisor stopped answering {service} while it still runs")

            timer = threading.Timer(0.5, check)
            timer.daemon = True
            timer.start()

    def _on_supervisor_dead(self, why: str) -> None:
        self.infra(f"the syscall supervisor died ({why}); intercepted syscalls can no longer be answered")

    def uses_worker(self) -> bool:
        """Whether this test has proxies or mocks in the proxy worker."""
        return bool(self.proxies.by_target) or any(rs.mocks for rs in list(self.services.running.values()))

    def _on_proxy_dead(self, why: str) -> None:
        if self.uses_worker():
            self.infra(f"the proxy worker died ({why}); the services' traffic through it is cut", Code.PROXY_FAILED)

    def infra(self, message: str, code: Code = Code.SUPERVISOR_FAILED) -> None:
        if self.infra_error is None:
            self.infra_error = InfraError(code, message)
            self.emit(code.value.lower(), "", {"error": message})  # supervisor_failed, proxy_failed

    # -- causal order ------------------------------------------------------------------------

    def source_emit(self, kind: str) -> Callable[..., None]:
        """The emit a WAL or topic source gets: it flushes what causally precedes its events."""

        def emit(type: str, service: str, fields: Mapping[str, str], data: Any = None) -> None:
            received = time.monotonic()
            self.syscalls_flushed.after(received)
            self.proxy_flushed.after(received)
            if kind == "kafka":
                self.wal_flushed.after(received)
            self.emit(type, service, fields, data)

        return emit

    def before_lines(self, received: float) -> None:
        """A log line comes after its service's syscalls and the commits it reports."""
        self.syscalls_flushed.after(received)
        self.proxy_flushed.after(received)
        self.wal_flushed.after(received)

    def _sync_proxies(self) -> None:
        if self.uses_worker():
            self.ctx.proxy_sync(5.0)

    def _sync_supervisor(self) -> None:
        if self.ctx.supervisor is not None and self.svc_names and self.infra_error is None:
            self.ctx.supervisor.sync(5.0)

    def _flush_wal(self) -> None:
        for rs in list(self.services.running.values()):
            if rs.model.managed is not None and rs.model.managed.kind == "postgres":
                for source in rs.sources:
                    source.barrier(2.0)

    # -- the barrier -------------------------------------------------------------------------

    def barrier(self) -> None:
        """Every event caused before now is in the trace when this returns."""
        if self.log.dispatching() or getattr(self._handler_thread, "active", False):
            # Inside a monitor, or a mock's handler (whose earlier requests are in the trace
            # already): the trace is exactly what it should see, and the system waits on it.
            return
        with self._barrier_lock:  # parallel() branches: one barrier at a time, each complete
            self._barrier()

    def _barrier(self) -> None:
        if self.ctx.supervisor is not None and self.svc_names and self.infra_error is None:
            try:
                self.ctx.supervisor.sync(BARRIER_TIMEOUT)
            except SupervisorError as exc:
                self.infra(str(exc))
        self.ctx.pump.drain(BARRIER_TIMEOUT)
        if self.uses_worker():
            try:
                self.ctx.proxy_sync(BARRIER_TIMEOUT)
            except Exception as exc:
                self.infra(f"the proxy worker did not answer: {exc}", Code.PROXY_FAILED)
        for rs in list(self.services.running.values()):
            if not rs.sources or not rs.alive():
                continue  # a server that exited has nothing more to say
            for source in rs.sources:
                try:
                    source.barrier(_SOURCE_BARRIER_TIMEOUT)
                except ServerDown:
                    continue  # crashed or restarting: it committed nothing since; it catches up later
                except Exception as exc:
                    self.emit(SOURCE_ERROR, rs.name, {"error": f"{type(exc).__name__}: {exc}"})

    @contextlib.contextmanager
    def without_barrier(self) -> Iterator[None]:
        """A mock's dynamic handler runs in here: its barrier would wait on the request it answers."""
        self._handler_thread.active = True
        try:
            yield
        finally:
            self._handler_thread.active = False


def _port_of(addr: str) -> int:
    _, _, port = addr.rpartition(":")
    return int(port) if port.isdigit() else -1
