"""The runner's side of the supervisor: spawn it, send requests, receive event batches.

A reader thread takes every message from the supervisor in order: event batches go to `on_events`,
replies wake the waiting request. Because replies and events share one ordered socket, a `sync()`
that returned means every event sent before it has been handed to `on_events` (the trace barrier).
If the supervisor dies, every waiting and later request fails and `on_dead` is told.
"""

from __future__ import annotations

import marshal
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from faultbox.errors import Code, InfraError

EventBatch = list[tuple[Any, ...]]
_BUF = 4 * 1024 * 1024


class SupervisorError(InfraError):
    """The supervisor died, hung or answered what it should not."""

    code = Code.SUPERVISOR_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(self.code, message)


class _Pending:
    __slots__ = ("done", "status", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.status = ""
        self.value: Any = None


class SupervisorClient:
    def __init__(
        self,
        on_events: Callable[[EventBatch], None],
        on_closed: Callable[[int, str], None],
        on_dead: Callable[[str], None],
    ) -> None:
        self._on_events = on_events
        self._on_closed = on_closed
        self._on_dead = on_dead
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (ours, theirs):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUF)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUF)
        self._sock = ours
        env = dict(os.environ, FAULTBOX_RUNNER_PID=str(os.getpid()))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faultbox.engine.supervisor", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._next = 0
        self.dead: str | None = None
        self._closing = False
        self._reader = threading.Thread(target=self._read, name="faultbox-supervisor-reader", daemon=True)
        self._reader.start()

    # -- requests ------------------------------------------------------------------------------

    def request(self, op: str, *args: Any, timeout: float = 15.0) -> Any:
        if self.dead is not None:
            raise SupervisorError(f"the syscall supervisor is gone ({self.dead})")
        waiter = _Pending()
        with self._lock:
            self._next += 1
            req = self._next
            self._pending[req] = waiter
            try:
                self._sock.send(marshal.dumps((op, *args, req)))
            except OSError as exc:
                self._pending.pop(req, None)
                raise SupervisorError(f"cannot reach the syscall supervisor: {exc}") from None
        if not waiter.done.wait(timeout):
            with self._lock:
                self._pending.pop(req, None)
            raise SupervisorError(f"the syscall supervisor did not answer {op!r} within {timeout:g}s")
        if waiter.status == "err":
            raise SupervisorError(str(waiter.value))
        if waiter.status == "dead":
            raise SupervisorError(f"the syscall supervisor is gone ({self.dead})")
        return waiter.value

    def register(self, svc_id: int, name: str, pid: int, fd_num: int) -> None:
        self.request("register", svc_id, name, pid, fd_num)

    def set_rules(self, svc_id: int, wire_rules: Sequence[tuple[Any, ...]]) -> dict[int, tuple[int, int, int]]:
        """Replace a service's rules (engine/rules.py WireRule each); returns (matched, fired,
        unresolved) of the removed ones."""
        result: dict[int, tuple[int, int, int]] = self.request("rules", svc_id, [tuple(r) for r in wire_rules])
        return result

    def unregister(self, svc_id: int) -> None:
        self.request("unregister", svc_id)

    def cut_delays(self, svc_id: int) -> int:
        """Answer the service's delayed syscalls now, before their deadlines (its test ended, the
        service is kept for the next); each is recorded with a negative lateness."""
        cut: int = self.request("cut", svc_id)
        return cut

    def sync(self, timeout: float = 15.0) -> None:
        self.request("sync", timeout=timeout)

    def release(self, tag: str, err: int, count: int) -> int:
        released: int = self.request("release", tag, err, count)
        return released

    def stats(self) -> dict[str, int]:
        stats: dict[str, int] = self.request("stats")
        return stats

    def close(self) -> None:
        """Stop the supervisor; it answers every parked syscall before it exits."""
        self._closing = True
        if self.dead is None:
            try:
                self.request("shutdown", timeout=5.0)
            except SupervisorError:
                pass
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._sock.close()

    # -- reader --------------------------------------------------------------------------------

    def _read(self) -> None:
        sock = self._sock
        # One preallocated buffer: recv() of a fresh 1 MiB bytes object per datagram cost ~10 µs.
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        why = "it exited"
        try:
            while True:
                n = sock.recv_into(buf)
                if not n:
                    break
                msg = marshal.loads(view[:n])
                kind = msg[0]
                if kind == "events":
                    self._on_events(msg[1])
                elif kind == "reply":
                    with self._lock:
                        waiter = self._pending.pop(msg[1], None)
                    if waiter is not None:
                        waiter.status, waiter.value = msg[2], msg[3]
                        waiter.done.set()
                elif kind == "closed":
                    self._on_closed(msg[1], msg[2])
        except OSError as exc:
            why = f"read failed: {exc}"
        except Exception as exc:  # a broken callback must not hide the supervisor's state
            why = f"event handling failed: {type(exc).__name__}: {exc}"
        self.dead = why
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for waiter in pending:
            waiter.status = "dead"
            waiter.done.set()
        if not self._closing:
            self._on_dead(why)
