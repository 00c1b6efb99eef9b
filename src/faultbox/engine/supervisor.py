"""The notification supervisor: one process per run, answering every service's seccomp listener.

It runs in its own process (DECISIONS §20: beside the runner's threads the GIL made each
notification cost milliseconds) as a single-threaded epoll loop:

    listener readable -> RECV -> read path/address -> decide -> SEND (or schedule, or hold)

A delay is a timer, not a sleep, so it never blocks other notifications; a held syscall waits in a
queue until released. Every decision becomes an event tuple, sent to the runner in batches over a
SOCK_SEQPACKET socket after the kernel has been answered; a `sync` request is answered only after
every earlier event was sent, which is the runner's trace barrier. The supervisor never blocks on
the runner: unsent batches wait in memory.

Run as `python -m faultbox.engine.supervisor <control-fd>`.
"""

from __future__ import annotations

import errno
import fcntl
import heapq
import marshal
import os
import random
import select
import signal
import socket
import sys
import time
from typing import Any

from faultbox._util.globs import field_match, path_match
from faultbox.engine import _abi, procmem
from faultbox.model.syscalls import FD_ARG0, PATH_ARG, SOCKADDR_ARG1, is_system_path, native_table

# Rule kinds on the wire (must match engine/rules.py).
K_ALLOW, K_DENY, K_DELAY, K_HOLD, K_TRACE = range(5)
_BATCH = 400
_MAX_MESSAGE = 96 * 1024
_ZERO = bytes(_abi.NOTIF.size)


class Rule:
    __slots__ = (
        "addr",
        "decision",
        "delay",
        "errno",
        "fired",
        "id",
        "kind",
        "matched",
        "path",
        "prob",
        "rng",
        "tag",
        "unresolved",
    )

    def __init__(self, wire: tuple[Any, ...]) -> None:
        (
            self.id,
            _nrs,
            self.kind,
            self.errno,
            self.decision,
            self.delay,
            self.prob,
            self.path,
            self.addr,
            self.tag,
            seed,
        ) = wire
        self.rng = random.Random(seed) if self.prob < 1.0 else None
        self.matched = self.fired = self.unresolved = 0


class Listener:
    __slots__ = ("fd", "name", "pid", "rules", "svc_id")

    def __init__(self, svc_id: int, name: str, fd: int, pid: int) -> None:
        self.svc_id = svc_id
        self.name = name
        self.fd = fd
        self.pid = pid
        self.rules: dict[int, list[Rule]] = {}  # syscall nr -> rules, newest first


class Supervisor:
    def __init__(self, ctl: socket.socket) -> None:
        self.ctl = ctl
        self.ctl.setblocking(False)
        self.ep = select.epoll()
        self.ep.register(ctl.fileno(), select.EPOLLIN)
        self.listeners: dict[int, Listener] = {}  # listener fd -> Listener
        self.by_svc: dict[int, Listener] = {}
        _, table = native_table()
        self.names = {nr: name for name, nr in table.items()}
        self.buf = bytearray(_abi.NOTIF.size)
        self.mem = procmem.MemReader()
        self.out: list[tuple[Any, ...]] = []
        self.pending: list[bytes] = []
        self.timers: list[tuple[float, int, Listener, int, tuple[Any, ...]]] = []
        self.timer_seq = 0
        self.held: dict[str, list[tuple[Listener, int, tuple[Any, ...]]]] = {}
        self.tgid: dict[int, int] = {}
        self.stats = dict.fromkeys(
            ("notifications", "dropped", "allowed", "denied", "delayed", "held", "send_failed", "unresolved"), 0
        )
        self.running = True

    # -- main loop -----------------------------------------------------------------------------

    def run(self) -> None:
        ctl_fd = self.ctl.fileno()
        listeners = self.listeners
        poll = self.ep.poll
        while self.running:
            timeout = -1.0
            if self.timers:
                timeout = max(self.timers[0][0] - time.monotonic(), 0.0)
            try:
                ready = poll(timeout)
            except InterruptedError:
                continue
            for fd, mask in ready:
                if fd == ctl_fd:
                    if mask & select.EPOLLOUT:
                        self._send_pending()
                    if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                        self._on_control()
                    continue
                lst = listeners.get(fd)
                if lst is None:
                    continue
                if mask & select.EPOLLIN:
                    self._on_notification(lst)
                elif mask & (select.EPOLLHUP | select.EPOLLERR):
                    self._close_listener(lst, "closed")
            if self.timers:
                self._fire_timers()
            if self.out:
                self._flush()
        self._shutdown()

    # -- notifications ---------------------------------------------------------------------------

    def _on_notification(self, lst: Listener) -> None:
        buf = self.buf
        buf[:] = _ZERO  # a dirty buffer makes RECV fail with EINVAL (DECISIONS §15)
        try:
            fcntl.ioctl(lst.fd, _abi.IOCTL_NOTIF_RECV, buf, True)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EINTR):
                self.stats["dropped"] += 1  # the task died or took a signal first: routine
                return
            self._close_listener(lst, "closed" if exc.errno in (errno.EBADF, errno.EPIPE) else f"failed: {exc}")
            return
        nid, tid, _flags, nr, _arch, _ip, a0, a1, a2, _a3, a4, a5 = _abi.NOTIF.unpack(buf)
        self.stats["notifications"] += 1
        name = self.names.get(nr) or f"syscall_{nr}"
        path = addr = None
        read_memory = False
        if name in FD_ARG0:
            path = procmem.fd_path(tid, a0 & 0xFFFFFFFF)
        if name in PATH_ARG:
            idx = PATH_ARG[name]
            raw = self.mem.read_string(tid, (a0, a1)[idx])
            read_memory = True
            if raw is not None:
                path = procmem.absolute(tid, _signed32(a0), raw) if idx == 1 else procmem.absolute(tid, -100, raw)
        if name in SOCKADDR_ARG1:
            addr = self.mem.read_sockaddr(tid, a1, a2)
            read_memory = True
        elif name == "sendto" and a4:
            addr = self.mem.read_sockaddr(tid, a4, a5)
            read_memory = True
        if read_memory and not self._still_valid(lst, nid):
            self.stats["dropped"] += 1
            return
        rule = None
        rules = lst.rules.get(nr)
        if rules:
            rule = self._decide(rules, path, addr)
        pid = self._tgid(tid)
        if rule is None or rule.kind in (K_ALLOW, K_TRACE):
            self._continue(lst, nid)
            self.out.append((lst.svc_id, time.time(), pid, tid, name, "allow", path, addr, -1, 0))
            return
        event = (lst.svc_id, time.time(), pid, tid, name, rule.decision, path, addr, rule.id, 0)
        kind = rule.kind
        if kind == K_DENY:
            self._respond(lst, nid, -rule.errno)
            self.stats["denied"] += 1
            self.out.append(event)
        elif kind == K_DELAY:
            self.timer_seq += 1
            heapq.heappush(self.timers, (time.monotonic() + rule.delay, self.timer_seq, lst, nid, event))
            self.stats["delayed"] += 1
        else:  # K_HOLD
            self.held.setdefault(rule.tag, []).append((lst, nid, event))
            self.stats["held"] += 1
            self.out.append(event)

    def _decide(self, rules: list[Rule], path: str | None, addr: str | None) -> Rule | None:
        """The first rule (newest first) that matches and passes its probability draw."""
        for rule in rules:
            if rule.path is not None:
                if path is None:
                    rule.unresolved += 1  # a path we could not resolve never counts as a match
                    continue
                if not path.startswith("/"):
                    continue  # a socket, pipe or anonymous inode: not a file a glob can name
                if not path_match(path, rule.path) and not path_match(os.path.dirname(path) + "/", rule.path):
                    continue
            elif path is not None and is_system_path(path):
                continue  # without a path glob, the loader's and /dev, /proc files are left alone
            if rule.addr is not None and (addr is None or not field_match(addr, rule.addr)):
                continue
            rule.matched += 1
            if rule.kind in (K_ALLOW, K_TRACE):
                continue
            rng = rule.rng
            if rng is not None and rng.random() >= rule.prob:
                continue
            rule.fired += 1
            return rule
        return None

    def _still_valid(self, lst: Listener, nid: int) -> bool:
        try:
            fcntl.ioctl(lst.fd, _abi.IOCTL_NOTIF_ID_VALID, nid.to_bytes(8, "little"))
            return True
        except OSError:
            return False

    def _continue(self, lst: Listener, nid: int) -> None:
        try:
            fcntl.ioctl(lst.fd, _abi.IOCTL_NOTIF_SEND, _abi.RESP.pack(nid, 0, 0, _abi.FLAG_CONTINUE))
            self.stats["allowed"] += 1
        except OSError:
            self.stats["send_failed"] += 1  # ENOENT: the task is gone

    def _respond(self, lst: Listener, nid: int, err: int) -> None:
        try:
            fcntl.ioctl(lst.fd, _abi.IOCTL_NOTIF_SEND, _abi.RESP.pack(nid, 0, err, 0))
        except OSError:
            self.stats["send_failed"] += 1

    def _fire_timers(self) -> None:
        now = time.monotonic()
        timers = self.timers
        while timers and timers[0][0] <= now:
            due, _, lst, nid, event = heapq.heappop(timers)
            if lst.fd in self.listeners:
                self._continue(lst, nid)
            late_ms = (now - due) * 1000.0
            self.out.append((*event[:9], round(late_ms, 3)))

    def _tgid(self, tid: int) -> int:
        pid = self.tgid.get(tid)
        if pid is None:
            pid = tid
            try:
                with open(f"/proc/{tid}/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"Tgid:"):
                            pid = int(line.split()[1])
                            break
            except OSError:
                pass
            if len(self.tgid) > 65536:
                self.tgid.clear()
            self.tgid[tid] = pid
        return pid

    # -- control -------------------------------------------------------------------------------

    def _on_control(self) -> None:
        while True:
            try:
                data = self.ctl.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the runner is gone: answer everything and leave
                self.running = False
                return
            msg = marshal.loads(data)
            try:
                reply = self._handle(msg)
            except Exception as exc:  # a bad request must not take the supervisor down
                self._reply(msg[-1], "err", f"{type(exc).__name__}: {exc}")
                continue
            if reply is not None:
                self._reply(msg[-1], "ok", reply)

    def _handle(self, msg: tuple[Any, ...]) -> Any:
        op = msg[0]
        if op == "register":
            _, svc_id, name, pid, fd_num, _req = msg
            pidfd = os.pidfd_open(pid)
            try:
                fd = _abi.pidfd_getfd(pidfd, fd_num)
            finally:
                os.close(pidfd)
            try:
                fcntl.ioctl(fd, _abi.IOCTL_NOTIF_SET_FLAGS, _abi.FD_SYNC_WAKE_UP)
            except OSError:
                pass  # older kernels: slower cross-CPU wake-ups, still correct
            lst = Listener(svc_id, name, fd, pid)
            self.listeners[fd] = lst
            self.by_svc[svc_id] = lst
            self.ep.register(fd, select.EPOLLIN)
            return True
        if op == "rules":
            _, svc_id, wire_rules, _req = msg
            return self._set_rules(self.by_svc[svc_id], wire_rules)
        if op == "sync":
            self._flush()
            return True
        if op == "release":
            _, tag, err, count, _req = msg
            return self._release(tag, err, count)
        if op == "unregister":
            gone = self.by_svc.get(msg[1])
            if gone is not None:
                self._close_listener(gone, None)
            return True
        if op == "stats":
            return dict(self.stats, pending_delays=len(self.timers), held_now=sum(len(v) for v in self.held.values()))
        if op == "shutdown":
            self.running = False
            return True
        raise ValueError(f"unknown request {op!r}")

    def _set_rules(self, lst: Listener, wire_rules: list[tuple[Any, ...]]) -> dict[int, tuple[int, int, int]]:
        """Replace a service's rules; report the final counters of rules that went away."""
        old = {r.id: r for rules in lst.rules.values() for r in rules}
        table: dict[int, list[Rule]] = {}
        kept: dict[int, Rule] = {}
        for wire in wire_rules:
            rule = old.get(wire[0]) or Rule(wire)
            kept[rule.id] = rule
            for nr in wire[1]:
                table.setdefault(nr, []).append(rule)
        lst.rules = table
        gone = {rid: (r.matched, r.fired, r.unresolved) for rid, r in old.items() if rid not in kept}
        for rid, r in old.items():
            if rid not in kept and r.kind == K_HOLD:
                self._release(r.tag, 0, 0)  # a hold never outlives its rule
        return gone

    def _release(self, tag: str, err: int, count: int) -> int:
        queue = self.held.get(tag, [])
        take = queue if count <= 0 else queue[:count]
        self.held[tag] = [] if count <= 0 else queue[count:]
        for lst, nid, event in take:
            if err:
                self._respond(lst, nid, -err)
                decision = f"deny({errno.errorcode.get(err, err)})"
            else:
                self._continue(lst, nid)
                decision = "allow"
            self.out.append((event[0], time.time(), *event[2:5], decision, *event[6:8], event[8], 0))
        return len(take)

    def _close_listener(self, lst: Listener, why: str | None) -> None:
        if lst.fd not in self.listeners:
            return
        del self.listeners[lst.fd]
        self.by_svc.pop(lst.svc_id, None)
        try:
            self.ep.unregister(lst.fd)
        except OSError:
            pass
        os.close(lst.fd)
        if why is not None:
            self._queue(marshal.dumps(("closed", lst.svc_id, why)))

    # -- sending to the runner -----------------------------------------------------------------

    def _flush(self) -> None:
        out = self.out
        self.out = []
        for i in range(0, len(out), _BATCH):
            self._queue_events(out[i : i + _BATCH])

    def _queue_events(self, batch: list[tuple[Any, ...]]) -> None:
        data = marshal.dumps(("events", batch))
        if len(data) > _MAX_MESSAGE and len(batch) > 1:  # long paths: keep each datagram small
            half = len(batch) // 2
            self._queue_events(batch[:half])
            self._queue_events(batch[half:])
            return
        self._queue(data)

    def _reply(self, req: int, status: str, value: Any) -> None:
        self._queue(marshal.dumps(("reply", req, status, value)))

    def _queue(self, data: bytes) -> None:
        if self.pending:
            self.pending.append(data)
            return
        try:
            self.ctl.send(data)
        except BlockingIOError:
            self.pending.append(data)
            self.ep.modify(self.ctl.fileno(), select.EPOLLIN | select.EPOLLOUT)
        except OSError:
            self.running = False

    def _send_pending(self) -> None:
        while self.pending:
            try:
                self.ctl.send(self.pending[0])
            except BlockingIOError:
                return
            except OSError:
                self.running = False
                return
            self.pending.pop(0)
        self.ep.modify(self.ctl.fileno(), select.EPOLLIN)

    def _shutdown(self) -> None:
        # Never leave a syscall parked: answer delays and holds, then let every listener go.
        for _, _, lst, nid, _ in self.timers:
            self._continue(lst, nid)
        for queue in self.held.values():
            for lst, nid, _ in queue:
                self._continue(lst, nid)
        for lst in list(self.listeners.values()):
            self._close_listener(lst, None)
        self.mem.close()


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when we stop
    _abi.die_with_parent()
    runner = int(os.environ.get("FAULTBOX_RUNNER_PID", "0"))
    if runner and os.getppid() != runner:
        sys.exit("faultbox supervisor: the runner is gone")
    ctl = socket.socket(fileno=int(sys.argv[1]))
    Supervisor(ctl).run()


if __name__ == "__main__":
    main()
