"""TestHost: what a running test offers its spec code (the spec.host.Host protocol).

One TestHost per test. It owns the test's trace and monitors, its services, its fault scopes and
its event ingestion (runner/ingest.py: syscall translation, causal flushes, and the barrier that
keeps the trace level with the scenario: after each step the supervisor, the stdio pump and the
event sources are flushed before the step returns, DECISIONS §19), and answers the builtins:
steps, faults, queries, waits, parallel() and its schedules.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from faultbox.errors import InfraError, MonitorStop, SpecFailure, TestTimeout
from faultbox.model.decisions import Schedule
from faultbox.model.event import Event
from faultbox.model.fault import Action, ActionKind, SyscallRule
from faultbox.model.filter import Filter
from faultbox.model.monitor import Monitor
from faultbox.model.response import Response
from faultbox.model.result import Violation
from faultbox.model.scenario import FaultAssumption, Rule
from faultbox.model.syscalls import SCHEDULED_SYSCALLS, SOCKET_PATH
from faultbox.model.temporal import Property
from faultbox.runner import temporal
from faultbox.runner.context import RunContext
from faultbox.runner.fault_backends import ProxyBackend, SyscallBackend
from faultbox.runner.faults import Backend, FaultTable, Scope
from faultbox.runner.ingest import TestEvents
from faultbox.runner.leaf import LeafState
from faultbox.runner.mocks import MockHandlers
from faultbox.runner.parallel import current_branch, run_branches
from faultbox.runner.proxies import ProxySet
from faultbox.runner.schedule import Scheduler, tag_of
from faultbox.runner.services import RunningService, ServiceSet
from faultbox.runner.steps import StepClients, recv_fields, send_fields
from faultbox.spec import host as host_mod
from faultbox.spec.args import ArgError
from faultbox.spec.compile import describe_exception
from faultbox.spec.values import starlark_repr
from faultbox.trace.log import TraceLog
from faultbox.trace.monitors import MonitorSet

T = TypeVar("T")
# A wait on the trace wakes on every new event; after this long without one it flushes the
# sources (a barrier) and looks again, in case something was caused but not yet delivered.
_QUIET_RECHECK = 0.5


class TestHost:
    __test__ = False  # not a pytest test class

    def __init__(
        self, ctx: RunContext, test_name: str, test_dir: str, deadline: float, leaf: LeafState | None = None
    ) -> None:
        self.ctx = ctx
        self.leaf = leaf or LeafState()
        self.test_name = test_name
        self.deadline = deadline
        # Monitors and predicates run on the thread that appends an event, often one shared by
        # every test (the I/O pump, the proxy reader): the log makes this host current around them.
        self.log = TraceLog(self.as_current)
        self.monitors = MonitorSet(self.log, describe_exception, self._on_violation)
        self.services = ServiceSet(ctx, test_dir, self.emit)
        self.services.on_unexpected_exit = self._on_exit
        self.proxies = ProxySet(ctx.proxy_hub, ctx.seed, lambda t, s, f: self.emit(t, s, f))
        backends: dict[str, Backend] = {
            "syscall": SyscallBackend(
                ctx.supervisor,
                ctx.spec.syscalls,
                lambda: self.services.svc_ids,
                ctx.seed,
                lambda: self.proxies.port_aliases,
                self._fires_for,
            ),
            "proxy": ProxyBackend(self.proxies.listeners),
        }
        self.faults = FaultTable(test_name, backends, lambda t, s, f: self.emit(t, s, f))
        self.faults.leave_out = self.leaf.is_off
        self.events = TestEvents(ctx, self.log, self.services, self.proxies, lambda: self.faults.by_id)
        self.assertions = 0
        self.output: list[str] = []
        self.seeding = False  # steps of a service's seed= must succeed
        self.seed_failure: str | None = None
        self.clients = StepClients(ctx, self.proxies, test_name)
        # parallel() branches may step, fault and query at once: these are taken one at a time.
        self._faults_lock = threading.RLock()
        self._partitions: dict[frozenset[str], Scope] = {}  # partition_start() until partition_stop()
        self.violated = threading.Event()
        self.properties = temporal.property_set(self)  # eventually/always of this test
        self.services.source_emit = self.events.source_emit
        self.mock_handlers = MockHandlers(self._in_mock_handler)
        self._assumption_monitors: set[int] = set()
        self.services.mock_handlers = self.mock_handlers
        self._nondet: set[str] = set()  # nondet(svc): never held by a scheduled parallel()
        self._scheduler: Scheduler | None = None  # while a scheduled parallel() runs

    def _fires_for(self, rule: SyscallRule) -> str:
        """A max_fires= fault is a fan-out site: its key is its label, else "service:keyword"."""
        key = rule.action.label or f"{rule.service}:{rule.keyword}"
        return self.leaf.fires(key, rule.action.max_fires, "") or ""

    def as_current(self) -> host_mod.using:
        """`with host.as_current():` this host is the running test's on this thread (spec/host.py),
        for spec code called on a thread that does not run in the test's context."""
        return host_mod.using(self)

    @contextlib.contextmanager
    def _in_mock_handler(self) -> Iterator[None]:
        """Around a mock's dynamic handler: it runs on a thread of the proxy's (RemoteHub's, started
        off its reader, run-level), so this host is made current there; and it skips its barrier."""
        with self.as_current(), self.events.without_barrier():
            yield

    # -- lifecycle -----------------------------------------------------------------------------

    def attach(self) -> None:
        """Route run-level notices (syscall events, supervisor trouble) to this test."""
        self.events.attach()

    def detach(self) -> None:
        self.events.detach()

    def start_services(self) -> None:
        self.proxies.open(self.ctx.spec.services.values())
        self.events.proxy_ports = self.proxies.real_addresses
        self.services.proxied = self.proxies.addresses
        self.services.proxy_aliases = self.proxies.aliases
        self.services.start_all()
        self.events.services_started()

    def proxy_address(self, service: str, interface: str) -> tuple[str, int] | None:
        """Where `svc.iface.proxy_addr` points in this test."""
        listener = self.proxies.by_target.get(f"{service}.{interface}")
        if listener is None:
            raise ArgError(
                f"{service}.{interface} has no proxy in this test (proxy=False, or a protocol without one)",
                f"use {service}.{interface}.addr",
            )
        return (listener.host, listener.port)

    def teardown(self) -> None:
        """Remove every fault, flush the trace, stop everything. Never raises."""
        steps = (
            self.faults.clear,
            self._quiet_barrier,
            self.clients.close,
            self.services.stop_all,  # mocks last of all: their consumers may still call them
            self.mock_handlers.stop,
            self.proxies.close,
        )
        for step in steps:
            try:
                step()
            except Exception as exc:  # teardown always runs to the end
                self.emit("teardown_error", "", {"error": f"{type(exc).__name__}: {exc}"})
        self.events.services_gone()

    # -- events --------------------------------------------------------------------------------

    def emit(
        self, type: str, service: str, fields: Mapping[str, str], data: Any = None, *, mirrored: bool = True
    ) -> Event:
        return self.log.append(Event(type, service, dict(fields), data, mirrored=mirrored))

    @property
    def infra_error(self) -> InfraError | None:
        return self.events.infra_error

    def _on_violation(self, violation: Violation) -> None:
        self.violated.set()

    def _on_exit(self, rs: RunningService, code: int) -> None:
        pass  # recorded as a service_exited event; the verdict is the spec's to decide

    def barrier(self) -> None:
        """Every event caused before now is in the trace when this returns."""
        self.events.barrier()

    def _quiet_barrier(self) -> None:
        self.barrier()

    # -- Host protocol -------------------------------------------------------------------------

    def checkpoint(self) -> None:
        if self.infra_error is not None:
            raise self.infra_error
        violation = self.monitors.violation
        if violation is not None:
            raise MonitorStop(f'monitor "{violation.monitor}" violated: {violation.message}')
        temporal.checkpoint(self.properties)
        if time.monotonic() > self.deadline:
            raise TestTimeout("the test ran past its deadline")

    def step(self, service: str, interface: str, method: str, kwargs: Mapping[str, Any]) -> Any:
        self.checkpoint()
        rs = self.services.running.get(service)
        if rs is None:
            raise ArgError(f'{service}.{interface}.{method}(): service "{service}" is not running in this test')
        iface = rs.model.interface(interface)
        assert iface is not None
        client = self.clients.get(rs, interface)
        args = dict(kwargs)
        if "timeout" in args:
            args["timeout"] = max(min(args["timeout"], self.deadline - time.monotonic()), 0.001)
        scheduler = self._scheduler
        if scheduler is not None:
            scheduler.saw_step(current_branch(), service)
        self.log.merge_clock(service, "test")
        self.emit("step_send", service, send_fields(service, iface.name, iface.protocol, method, args))
        start = time.monotonic()
        try:
            result = client.call(method, args)
        except SpecFailure as exc:  # tcp.send raises when there is no reply; record it first
            start_barrier = time.monotonic()
            self.barrier()
            start += time.monotonic() - start_barrier
            self.emit("step_recv", service, recv_fields(service, iface.name, method, None, start, str(exc)))
            self.checkpoint()  # a step cut short by the deadline is a timeout, not a failure
            raise
        took = time.monotonic() - start
        if self.seeding and isinstance(result, Response) and not result.ok and self.seed_failure is None:
            self.seed_failure = f"{service}.{interface}.{method}() failed: {result.error}"
        self.barrier()
        self.emit("step_recv", service, recv_fields(service, iface.name, method, result, time.monotonic() - took))
        self.log.merge_clock("test", service)
        self.checkpoint()
        return result

    def choose(self, name: str, options: Sequence[Any], location: str) -> int:
        index = self.leaf.choose(name, list(options), location)
        if name:
            self.emit("choice", "", {"name": name, "option": str(index), "value": starlark_repr(options[index])[:200]})
        return index

    @property
    def run_seed(self) -> int:
        return self.ctx.seed

    def exempt_from_schedule(self, services: Sequence[str]) -> None:
        self._nondet.update(services)

    def run_parallel(
        self, fns: Sequence[Callable[[], Any]], schedule: Schedule | None = None, site: str = ""
    ) -> list[Any]:
        self.checkpoint()
        if schedule is None or self._scheduler is not None:  # a parallel() in a scheduled branch: plain
            results = run_branches(fns)
        else:
            results = self._run_scheduled(fns, schedule, site)
        self.checkpoint()
        return results

    def _run_scheduled(self, fns: Sequence[Callable[[], Any]], schedule: Schedule, site: str) -> list[Any]:
        """The branches, with every scheduled service's socket sends held and released one at a
        time in the schedule's order (runner/schedule.py). The holds end with the call."""
        supervisor = self.ctx.supervisor
        services = self._schedulable()
        if supervisor is None or not services:
            self.emit("schedule", "", {"site": site, "skipped": "no service can be scheduled"})
            return run_branches(fns)
        hold = [
            SyscallRule(
                service=name,
                keyword="schedule",
                syscalls=SCHEDULED_SYSCALLS,
                action=Action(ActionKind.HOLD, tag=tag_of(name), path=SOCKET_PATH),
                path=SOCKET_PATH,
            )
            for name in services
        ]
        scheduler = Scheduler(self.log, supervisor, services, schedule, site, self.emit, self.checkpoint)
        self.barrier()
        with self.log.lock:
            scheduler.skip_to(len(self.log))
        with self._faults_lock:
            scope = self.faults.push(hold, internal=True)

        def end_holds() -> None:
            with self._faults_lock:
                self.faults.pop(scope)  # what is still held goes on

        def drive(done: Callable[[], bool]) -> None:
            try:
                scheduler.run(done)
            finally:
                end_holds()  # before the branches are interrupted: they may wait on a held send

        self._scheduler = scheduler
        try:
            return run_branches(fns, driver=drive)
        finally:
            self._scheduler = None
            end_holds()
            self.leaf.record_order(site, scheduler.realised())

    def _schedulable(self) -> list[str]:
        """The services a scheduled call holds: running processes whose filter intercepts the
        scheduled syscalls (a spec with interleavings= gets them in every filter), nondet() aside."""
        ids = self.services.svc_ids
        out = []
        for name, rs in self.services.running.items():
            have = self.ctx.spec.syscalls.get(name, frozenset())
            if name in self._nondet or name not in ids or rs.model.is_mock:
                continue
            if all(sc in have for sc in SCHEDULED_SYSCALLS):
                out.append(name)
        return out

    def _not_in_monitor(self, what: str) -> None:
        """Faults change what the system does; a monitor only watches. (A monitor runs while an
        event is being appended, possibly on the thread that must answer the change.)"""
        if self.log.dispatching():
            raise ArgError(
                f"{what} cannot run inside a monitor",
                "monitors only read the trace; start and stop faults in the test or the scenario",
            )

    def apply_faults(self, rules: Sequence[Rule], run: Callable[[], Any] | None) -> Any:
        self._not_in_monitor("a fault")
        self.checkpoint()
        self.barrier()  # what happened before the fault is in the trace before fault_applied
        with self._faults_lock:
            scope = self.faults.push(rules, imperative=run is None)
        if run is None:
            return None
        try:
            return run()
        finally:
            self.barrier()
            with self._faults_lock:
                self.faults.pop(scope)

    def apply_assumptions(self, assumptions: Sequence[FaultAssumption], run: Callable[[], Any]) -> Any:
        self._not_in_monitor("fault()")
        self.checkpoint()
        # An assumption's monitors watch from here to the end of the test (its expectation and
        # whatever arrives late included), each once however often the assumption is applied.
        for fa in assumptions:
            for monitor in fa.monitors:
                if id(monitor) not in self._assumption_monitors:
                    self._assumption_monitors.add(id(monitor))
                    self.monitors.add(monitor)
        scopes = []
        self.barrier()
        try:
            for fa in assumptions:
                if fa.rules:
                    with self._faults_lock:
                        scopes.append(self.faults.push(fa.rules, assumption=fa.name))
            return run()
        finally:
            self.barrier()
            with self._faults_lock:
                for scope in reversed(scopes):
                    self.faults.pop(scope)

    def stop_faults(self, service: str, interface: str | None = None, *, traces: bool = False) -> None:
        self._not_in_monitor("trace_stop()" if traces else "fault_stop()")
        self.barrier()
        with self._faults_lock:
            self.faults.stop_target(service, interface, traces=traces)

    def start_partition(self, pair: frozenset[str], rules: Sequence[SyscallRule]) -> None:
        self._not_in_monitor("partition_start()")
        self.checkpoint()
        self.barrier()
        with self._faults_lock:
            if pair in self._partitions:
                a, b = sorted(pair)
                raise ArgError(
                    f"partition_start(): {a} and {b} are already partitioned",
                    f"call partition_stop({a}, {b}) first (one partition per pair at a time)",
                )
            self._partitions[pair] = self.faults.push(rules)

    def stop_partition(self, pair: frozenset[str]) -> None:
        self._not_in_monitor("partition_stop()")
        self.barrier()
        with self._faults_lock:
            scope = self._partitions.pop(pair, None)
            if scope is None:
                a, b = sorted(pair)
                raise ArgError(
                    f"partition_stop(): {a} and {b} are not partitioned",
                    f"start one with partition_start({a}, {b}), or drop this call",
                )
            self.faults.pop(scope)

    def release(self, tag: str, errno_name: str | None, count: int) -> int:
        if self.ctx.supervisor is None:
            return 0
        import errno as errno_mod

        err = getattr(errno_mod, errno_name) if errno_name else 0
        released = self.ctx.supervisor.release(tag, err, count)
        self.barrier()
        return released

    def query(self, filters: Mapping[str, str], where: Callable[[Event], Any] | None) -> list[Event]:
        self.barrier()
        return self.log.select(filters, where)

    def nearest(self, filters: Mapping[str, str], limit: int) -> list[Event]:
        return self.log.nearest(Filter.of(filters), limit)

    def wait_for(self, filters: Mapping[str, str], where: Callable[[Event], Any] | None, timeout: float) -> bool:
        found = self.wait_until(lambda: True if self.log.select(filters, where) else None, timeout, "a wait")
        return bool(found)

    def trace(self) -> TraceLog:
        self.barrier()
        return self.log

    def wait_until(self, check: Callable[[], T | None], timeout: float | None, what: str) -> T | None:
        self._not_in_monitor(what)
        start = time.monotonic()
        end = self.deadline + 1.0 if timeout is None else start + timeout
        flush = True
        while True:
            self.checkpoint()
            if flush:
                self.barrier()
            with self.log.lock:  # nothing enters the trace between the check and `seen`
                found = check()
                seen = len(self.log)
            if found is not None:
                return found
            now = time.monotonic()
            if now >= end:
                if flush:
                    return None
                flush = True  # a last look after a barrier
                continue
            limit = min(end, self.deadline + 0.001) - now
            flush = not self.log.wait_beyond(seen, max(min(limit, _QUIET_RECHECK), 0.001))

    def await_quiet(self, window: float, ignore: Callable[[Event], Any] | None) -> None:
        self._not_in_monitor("await_stable()")
        self.checkpoint()
        with self.log.lock:
            seen = len(self.log)
        quiet_since = time.monotonic()
        while True:
            self.checkpoint()
            now = time.monotonic()
            due = quiet_since + window
            if now >= due:
                self.barrier()  # what was caused during the window is in the trace
            else:
                self.log.wait_beyond(seen, max(min(due, self.deadline + 0.001) - now, 0.001))
            with self.log.lock:
                new = self.log.events[seen:]
                seen = len(self.log)
            if any(ignore is None or not ignore(e) for e in new):
                quiet_since = time.monotonic()
            elif now >= due:
                return

    def add_monitor(self, monitor: Monitor) -> None:
        self.monitors.add(monitor)

    def add_property(self, prop: Property) -> None:
        temporal.add_expectation(self, prop)

    def signal_anchor(self, name: str) -> None:
        self.properties.signal(name)

    def print(self, text: str) -> None:
        self.output.append(text)
        sys.stderr.write(f"[{self.test_name}] {text}\n")

    def count_assertion(self) -> None:
        self.assertions += 1

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.checkpoint()
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            self.violated.wait(min(remaining, 0.05))


# The step's arguments an event carries (the reference's list, with faultbox's own names).
