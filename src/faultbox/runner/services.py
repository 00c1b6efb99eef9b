"""The services of one test: started fresh in dependency order, each waiting for its healthcheck
(raced against its exit), watched while the test runs, and all stopped afterwards.

A service declared with reuse=True is kept running when its test ends (in the run's, or the test
worker's, RunContext) and adopted by the next test that starts it, if it is still alive and still
passes its healthcheck; otherwise that test starts it fresh. Its output and its exit go to whichever
test holds it (`RunningService.emit`, `.owner`); between tests they are recorded nowhere."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from faultbox._util.dag import run_in_order
from faultbox.deps import ServerPlan
from faultbox.engine.launch import LaunchError, LaunchSpec, ServiceProcess, spawn
from faultbox.errors import Code, InfraError
from faultbox.model.service import Observe, Service, start_order
from faultbox.proxy.remote import ProxyWorkerError, RemoteMock
from faultbox.runner import mocks
from faultbox.runner.context import RunContext
from faultbox.runner.health import Probe, probe_for, wait_ready
from faultbox.runner.managed import Source
from faultbox.runner.wiring import UnknownProxy, rewrite_env, wiring_env
from faultbox.sources.decoders import decode

Emit = Callable[..., Any]
_TAIL = 40
_READY_AGAIN = 5.0  # seconds a kept service has to pass its healthcheck again


class StartFailure(InfraError):
    """A service did not come up; the test fails with this message."""


def _nowhere(*args: Any, **kwargs: Any) -> None:
    pass


@dataclass(eq=False)
class RunningService:
    model: Service
    process: ServiceProcess | None  # None for a mock: the proxy worker serves it
    svc_id: int | None  # supervisor id when the service runs under a filter
    stop_signal: int = signal.SIGTERM
    stop_grace: float = 2.0
    stdout_tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL))
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL))
    exit_reported: bool = False
    stopping: bool = False
    plan: ServerPlan | None = None
    sources: list[Source] = field(default_factory=list)
    mocks: list[RemoteMock] = field(default_factory=list)
    emit: Emit = _nowhere  # where its output goes: its test's trace (nowhere between tests)
    owner: ServiceSet | None = None  # the test holding it (None while a kept service waits)
    reused: bool = False  # kept from an earlier test rather than started for this one
    clean: bool = False  # seeded (and its reset checked) in this test: fit to be kept for the next
    baseline: dict[str, str] | None = None  # its data after a fresh start's seed (reuse=True)

    @property
    def name(self) -> str:
        return self.model.name

    def alive(self) -> bool:
        return self.process.alive() if self.process is not None else bool(self.mocks)


class ServiceSet:
    def __init__(self, ctx: RunContext, test_dir: str, emit: Emit) -> None:
        self.ctx = ctx
        self.test_dir = test_dir
        self.emit = emit
        self.running: dict[str, RunningService] = {}
        self.on_unexpected_exit: Callable[[RunningService, int], None] | None = None
        # The emit handed to a managed server's event sources, by server kind.
        self.source_emit: Callable[[str], Emit] = lambda kind: emit
        # Set before start_all(): (service, interface) -> its proxy's (host, port), and the same by
        # the interface's real port -> "host:port" (for rewriting env values).
        self.proxied: dict[tuple[str, str], tuple[str, int]] = {}
        self.proxy_aliases: dict[int, str] = {}
        # How a mock's dynamic answers are computed (set by the test's host).
        self.mock_handlers: mocks.MockHandlers | None = None
        # Set when a concurrent start failed: services still waiting for their health stop waiting.
        self._giving_up = threading.Event()

    @property
    def svc_ids(self) -> dict[str, int]:
        return {name: rs.svc_id for name, rs in self.running.items() if rs.svc_id is not None}

    def start_all(self) -> None:
        """In dependency order, one after another (as the reference does: a service declared after
        another starts once that one is ready, depends_on or not); with the run's concurrent_start,
        each service as soon as its depends_on are ready, the others at the same time."""
        env = wiring_env(self.ctx.spec.services.values(), self.proxied)
        order = start_order(self.ctx.spec.services.values())

        def start(svc: Service) -> None:
            if svc.is_mock:
                self._start_mock(svc)
            elif not (svc.reuse and self._adopt(svc)):
                self._start(svc, env)

        if not self.ctx.concurrent_start:
            for svc in order:
                start(svc)
            return
        by_name = {svc.name: svc for svc in order}
        deps = {svc.name: list(svc.depends_on) for svc in order}
        run_in_order([svc.name for svc in order], deps, lambda name: start(by_name[name]), self._giving_up)

    def _adopt(self, svc: Service) -> bool:
        """Take over the service an earlier test kept, if it is alive and healthy."""
        kept = self.ctx.kept.pop(svc.name, None)
        if kept is None:
            return False
        rs: RunningService = kept.service
        if not rs.alive() or not _still_ready(rs):
            kept.stop()
            return False
        assert rs.process is not None
        rs.owner, rs.emit, rs.reused = self, self.emit, True
        rs.stopping = rs.exit_reported = False
        self.running[svc.name] = rs
        self.emit("service_started", svc.name, {"pid": str(rs.process.pid), "reused": "true"})
        self.emit("service_ready", svc.name, {"reused": "true"})
        self._start_sources(rs)
        return True

    def _check_ports(self, svc: Service) -> None:
        for iface in svc.interfaces:
            holder = self.ctx.port_holder(iface.port) if iface.port else None
            if holder is not None:
                raise StartFailure(
                    Code.PORT_IN_USE,
                    f"{svc.name}.{iface.name}: port {iface.port} is already in use{holder}",
                )

    def _start_mock(self, svc: Service) -> None:
        self._check_ports(svc)
        assert self.mock_handlers is not None
        try:
            served = mocks.serve(self.ctx.proxy_hub(), svc, self.emit, self.mock_handlers)
        except (ProxyWorkerError, OSError) as exc:
            raise StartFailure(Code.LAUNCH_FAILED, f"{svc.name}: cannot serve the mock: {exc}") from None
        self.running[svc.name] = RunningService(svc, None, None, mocks=served, emit=self.emit, owner=self)
        listen = " ".join(m.addr for m in served)
        self.emit("service_started", svc.name, {"kind": "mock", "listen": listen})
        # The mock accepts once open_mock returns: it is ready.
        self.emit("service_ready", svc.name, {"kind": "mock"})

    def _start(self, svc: Service, wiring: Mapping[str, str]) -> None:
        managed = self.ctx.managed.plan(svc, self.test_dir) if svc.managed is not None else None
        self._check_ports(svc)
        syscalls = self.ctx.spec.syscalls.get(svc.name, frozenset())
        svc_id = self.ctx.next_svc_id() if syscalls else None
        try:
            own_env = rewrite_env(svc.env, self.proxy_aliases, (iface.port for iface in svc.interfaces), self.proxied)
        except UnknownProxy as exc:
            raise StartFailure(Code.LAUNCH_FAILED, f"{svc.name}: {exc}") from None
        if svc.reuse and own_env != dict(svc.env):
            names = ", ".join(sorted(k for k in own_env if own_env[k] != svc.env.get(k)))
            raise StartFailure(
                Code.SPEC_BAD_ARGUMENT,
                f"{svc.name}: reuse=True, but its env ({names}) names other services' addresses, which go "
                "through proxies opened anew for every test: a kept process would keep the first test's. "
                "Keep only servers that call nobody, or drop reuse=True",
            )
        # A service's own FAULTBOX_* variables name its real interfaces: those are what it binds.
        own_wiring = wiring_env([svc], {})
        env = {**os.environ, **wiring, **own_wiring, **(managed.env if managed else {}), **own_env}
        spec = LaunchSpec(
            name=svc.name,
            argv=managed.argv if managed else svc.argv,
            env=env,
            cwd=managed.cwd if managed else svc.cwd,
            user=managed.user if managed else svc.user,
            syscalls=syscalls,
        )
        cgroup = self.ctx.cgroups.new(svc.name)
        try:
            process = spawn(spec, self.ctx.supervisor if syscalls else None, svc_id or 0, cgroup)
        except LaunchError as exc:
            if cgroup is not None:
                cgroup.remove()
            raise StartFailure(Code.LAUNCH_FAILED, f"{svc.name}: {exc}") from None
        rs = RunningService(
            svc,
            process,
            svc_id,
            stop_signal=managed.stop_signal if managed else signal.SIGTERM,
            stop_grace=managed.stop_grace if managed else svc.stop_grace,
            plan=managed,
            emit=self.emit,
            owner=self,
        )
        self.running[svc.name] = rs
        self.ctx.reaper.watch_group(process.pgid)
        if cgroup is not None:
            self.ctx.reaper.watch_cgroup(str(cgroup.path))
        self._pipe(rs)
        self.emit("service_started", svc.name, {"pid": str(process.pid), "argv": " ".join(spec.argv)[:500]})
        probe: Probe | None = managed.probe if managed else (probe_for(svc.healthcheck) if svc.healthcheck else None)
        if probe is None:
            return
        timeout = svc.healthcheck.timeout if svc.healthcheck else 30.0
        outcome = wait_ready(probe, time.monotonic() + timeout, lambda: not process.alive() or self._giving_up.is_set())
        if outcome == "exited" and self._giving_up.is_set() and process.alive():
            raise StartFailure(Code.LAUNCH_FAILED, f"{svc.name}: not started (another service failed to start)")
        if outcome == "exited":
            self.ctx.pump.drain(1.0)
            code = process.peek_exit_code()
            raise StartFailure(
                Code.SERVICE_EXITED,
                f"{svc.name} exited with code {code} while starting" + _tail_text(rs.stderr_tail or rs.stdout_tail),
            )
        if outcome is not None:
            raise StartFailure(
                Code.HEALTHCHECK_TIMEOUT,
                f"{svc.name} was not ready within {timeout:g}s ({outcome.removeprefix('timeout: ')})"
                + _tail_text(rs.stderr_tail),
            )
        self.emit("service_ready", svc.name, {})
        self._start_sources(rs)

    def _start_sources(self, rs: RunningService) -> None:
        """The server's event sources, for this test (a kept server's start where it is now)."""
        if rs.plan is None:
            return
        for source in self.ctx.managed.sources(rs.model, rs.plan, self.source_emit(rs.plan.kind)):
            try:
                source.start()
            except Exception as exc:
                raise StartFailure(
                    Code.LAUNCH_FAILED, f"{rs.name}: cannot observe it ({type(exc).__name__}: {exc})"
                ) from None
            rs.sources.append(source)

    def state(self, rs: RunningService) -> dict[str, str] | None:
        """A kept server's data, summarised (None when faultbox cannot read it)."""
        return self.ctx.managed.state(rs.model, rs.plan) if rs.plan is not None else None

    def _pipe(self, rs: RunningService) -> None:
        observed: dict[str, Observe] = {o.stream: o for o in rs.model.observe}
        assert rs.process is not None
        proc = rs.process.proc
        assert proc.stdout is not None and proc.stderr is not None
        for stream, pipe, tail in (("stdout", proc.stdout, rs.stdout_tail), ("stderr", proc.stderr, rs.stderr_tail)):
            self.ctx.pump.add(pipe, _line_handler(rs, stream, tail, observed.get(stream)))
        # The test that holds the service when it exits reports it.
        self.ctx.pump.watch(os.dup(rs.process.pidfd), lambda: rs.owner._exited(rs) if rs.owner else None)

    def _exited(self, rs: RunningService) -> None:
        if rs.stopping or rs.exit_reported:
            return
        rs.exit_reported = True
        assert rs.process is not None
        code = rs.process.peek_exit_code()
        self.emit("service_exited", rs.name, _exit_fields(code, "crashed"))
        if self.on_unexpected_exit is not None and code is not None:
            self.on_unexpected_exit(rs, code)

    def sources(self) -> list[Source]:
        return [src for rs in self.running.values() for src in rs.sources]

    def stop_all(self) -> None:
        """Stop in reverse start order (a reuse=True service that is still alive is kept for the
        next test instead). Never raises: teardown must always finish."""
        keep = {rs.name for rs in self.running.values() if self._may_keep(rs)}
        for rs in self.running.values():
            for source in rs.sources:
                try:
                    source.stop()
                except Exception:
                    pass
            rs.sources.clear()
        for rs in reversed(list(self.running.values())):
            rs.stopping = True
            if rs.process is None:
                self._stop_mock(rs)
                continue
            if rs.name in keep and rs.alive():
                self._keep(rs)
                continue
            code = _stop_process(self.ctx, rs)
            if not rs.exit_reported:
                rs.exit_reported = True
                self.emit("service_exited", rs.name, _exit_fields(code, "stopped"))
        self.running.clear()

    def _may_keep(self, rs: RunningService) -> bool:
        """Whether a service can be kept for the next test: reuse=True, its hooks and check passed,
        and none of its syscalls left parked. Its faults end with the test (their rules went at
        teardown), but a syscall still delayed would hold the server past its deadline into the
        next test (its healthcheck; a replication slot waiting on the transaction it parks). So its
        delays are cut short first, before its sources stop and before the services that use it
        stop (whose shutdown may wait on it): recorded in this test, with a negative late_ms."""
        if not (rs.model.reuse and rs.clean and rs.process is not None and rs.alive()):
            return False
        if rs.svc_id is None or self.ctx.supervisor is None:
            return True
        try:
            self.ctx.supervisor.cut_delays(rs.svc_id)
        except Exception as exc:  # its syscalls may still be parked: not fit for the next test
            self.emit("teardown_error", rs.name, {"error": f"could not end its delayed syscalls: {exc}"})
            return False
        return True

    def _keep(self, rs: RunningService) -> None:
        self.ctx.pump.drain(1.0)  # what it printed during the test belongs to the test
        rs.owner, rs.reused, rs.clean = None, False, False
        rs.emit = _nowhere  # between tests its output is recorded nowhere (its tail still fills)
        self.ctx.kept[rs.name] = Kept(self.ctx, rs)

    def _stop_mock(self, rs: RunningService) -> None:
        for mock in rs.mocks:
            mock.close()
        rs.mocks.clear()
        rs.exit_reported = True
        self.emit("service_exited", rs.name, {"reason": "stopped", "kind": "mock"})


class Kept:
    """A reuse=True service between tests, held by the RunContext (which stops it when the run or
    the worker ends)."""

    def __init__(self, ctx: RunContext, service: RunningService) -> None:
        self.ctx = ctx
        self.service = service

    def stop(self) -> None:
        _stop_process(self.ctx, self.service)


def _stop_process(ctx: RunContext, rs: RunningService) -> int | None:
    assert rs.process is not None
    rs.stopping = True
    try:
        code = rs.process.stop(rs.stop_grace, rs.stop_signal)
    except OSError:
        code = rs.process.exit_code or -1
    ctx.pump.drain(1.0)
    ctx.reaper.forget_group(rs.process.pgid)
    if rs.process.cgroup is not None:
        ctx.reaper.forget_cgroup(str(rs.process.cgroup.path))
    if rs.svc_id is not None and ctx.supervisor is not None:
        try:
            ctx.supervisor.unregister(rs.svc_id)
        except Exception:
            pass
    return code


def _still_ready(rs: RunningService) -> bool:
    """A kept service passes its healthcheck again (quickly: it was ready when its test ended)."""
    assert rs.process is not None
    process = rs.process
    probe: Probe | None = (
        rs.plan.probe if rs.plan else (probe_for(rs.model.healthcheck) if rs.model.healthcheck else None)
    )
    if probe is None:
        return process.alive()
    return wait_ready(probe, time.monotonic() + _READY_AGAIN, lambda: not process.alive()) is None


def _line_handler(rs: RunningService, stream: str, tail: deque[str], observe: Observe | None) -> Callable[[str], None]:
    def on_line(line: str) -> None:
        tail.append(line)
        if observe is not None:
            fields, data = decode(line, observe.decoder)
            rs.emit(stream, rs.name, fields, data)  # the test holding it now, if any

    return on_line


def _exit_fields(code: int | None, reason: str) -> dict[str, str]:
    fields = {"reason": reason}
    if code is None:
        return fields
    fields["exit_code"] = str(code)
    if code < 0:
        try:
            fields["signal"] = signal.Signals(-code).name
        except ValueError:
            fields["signal"] = str(-code)
    return fields


def _tail_text(lines: deque[str], n: int = 12) -> str:
    if not lines:
        return "; it printed nothing on stderr"
    shown = list(lines)[-n:]
    return "; its last output:\n" + "\n".join(f"    | {line}" for line in shown)
