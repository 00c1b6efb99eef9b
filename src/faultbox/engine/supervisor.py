"""The notification supervisor: one process per run, answering every service's seccomp listener.

It runs in its own process (DECISIONS §20: beside the runner's threads the GIL made each
notification cost milliseconds). Its hot loop is `_notify.Loop`, in C with the GIL released: a
notification whose syscall has no firing rule on that service is answered there (CONTINUE), with
its path or destination recorded, and so is one whose newest rule is an unconditional deny (no path
or address glob, probability 1). Every other notification with a deny, delay or hold rule comes back
here and is decided in Python:

    resolve path / address -> first matching rule (newest first) -> deny, or delay (a timer), or hold

A delay is handed to the C loop, which answers it when due, counted from when the loop woke for the
notification: it never blocks other notifications, and no Python work stands between its deadline and
its answer. A held syscall waits in a queue until released. The process runs under SCHED_FIFO when
allowed (every intercepted call waits for it; a busy machine's other tasks made delays late by
milliseconds). Every decision becomes an event, sent to the runner in batches (at most every
2 ms, or every 256 events) over a SOCK_SEQPACKET socket after the kernel has been answered. A `sync`
request is answered only after every earlier event was sent: the runner's trace barrier. The
supervisor never blocks on the runner: unsent batches wait in memory.

Run as `python -m faultbox.engine.supervisor <control-fd>`.
"""

from __future__ import annotations

import errno
import fcntl
import marshal
import os
import random
import signal
import socket
import sys
import time
from typing import Any

from faultbox._util.globs import field_match, path_match
from faultbox.engine import _abi, _notify, procmem
from faultbox.engine.rules import K_DELAY, K_DENY, K_HOLD, K_TRACE, WireRule
from faultbox.model.syscalls import FD_ARG0, PATH_ARG, SOCKADDR_ARG1, SOCKET_PATH, is_system_path, native_table

_FIRING = (K_DENY, K_DELAY, K_HOLD)
_SLOW = (*_FIRING, K_TRACE)  # kinds whose syscalls the Python loop must see (a trace records them)
_BATCH = 256
_FLUSH_AFTER = 0.002
_REALTIME_LINGER = 0.2  # seconds of real-time scheduling after the last delay was queued
_MAX_MESSAGE = 96 * 1024


class Rule:
    __slots__ = (
        "addr", "decision", "delay", "errno", "fired", "fires", "id", "kind", "matched", "nrs", "occurrence", "path",
        "prob", "rng", "tag", "unresolved",
    )  # fmt: skip

    def __init__(self, sent: tuple[Any, ...]) -> None:
        wire = WireRule(*sent)
        self.id, self.nrs, self.kind, self.errno = wire.id, wire.nrs, wire.kind, wire.errno
        self.decision, self.delay, self.prob = wire.decision, wire.delay, wire.probability
        self.path, self.tag = wire.path, wire.tag
        self.rng = random.Random(wire.seed) if self.prob < 1.0 else None
        # one glob, or several (an address and its proxy's)
        self.addr = (wire.addr,) if isinstance(wire.addr, str) else wire.addr
        self.matched = self.fired = self.unresolved = 0
        self.fires, self.occurrence = wire.fires, 0  # max_fires=: the leaf's decision per occurrence


class Listener:
    __slots__ = ("fd", "name", "pid", "rules", "svc_id")

    def __init__(self, svc_id: int, name: str, fd: int, pid: int) -> None:
        self.svc_id = svc_id
        self.name = name
        self.fd = fd
        self.pid = pid
        self.rules: dict[int, list[Rule]] = {}  # syscall nr -> rules, newest first


def arg_kinds(names: dict[int, str]) -> bytes:
    """One byte per syscall number: which arguments the C loop resolves for the event."""
    kinds = bytearray(1024)
    for nr, name in names.items():
        if nr >= len(kinds):
            continue
        k = 0
        if name in FD_ARG0:
            k |= _notify.K_FD
        if name in PATH_ARG:
            k |= _notify.K_PATH0 if PATH_ARG[name] == 0 else _notify.K_PATH1
        if name in SOCKADDR_ARG1:
            k |= _notify.K_SOCKADDR1
        if name == "sendto":
            k |= _notify.K_SENDTO
        kinds[nr] = k
    return bytes(kinds)


class Supervisor:
    def __init__(self, ctl: socket.socket) -> None:
        self.ctl = ctl
        self.ctl.setblocking(False)
        _, table = native_table()
        self.names = {nr: name for name, nr in table.items()}
        self.loop = _notify.Loop(ctl.fileno(), arg_kinds(self.names))
        self.listeners: dict[int, Listener] = {}  # listener fd -> Listener
        self.by_svc: dict[int, Listener] = {}
        self.closed: dict[int, Listener] = {}  # svc id -> a listener that hung up (its rules' counters)
        self.rules: dict[int, Rule] = {}  # rule id -> rule, every listener's
        self.mem = procmem.MemReader()
        self.out: list[tuple[Any, ...]] = []  # decided here, waiting to be sent
        self.out_since = 0.0
        self.pending: list[bytes] = []  # could not be sent yet (the runner is slow)
        self.delays: dict[int, tuple[Any, ...]] = {}  # token -> the event of a delay pending in the C loop
        self.delay_seq = 0
        # SCHED_FIFO while delays are pending, only: a delay must be answered on time even on a busy
        # machine, but a real-time loop costs every other notification a few microseconds (measured
        # in bench_supervisor: +7 us a CONTINUE on these VMs), and most of a run has no delay at all.
        self.realtime = False
        self.last_delay = 0.0  # when the newest delay was queued: real-time lasts _REALTIME_LINGER past it
        self.held: dict[str, list[tuple[Listener, int, tuple[Any, ...]]]] = {}
        self.stats = dict.fromkeys(("slow", "dropped", "denied", "delayed", "held", "unresolved", "wakeups"), 0)
        self.running = True

    # -- main loop -----------------------------------------------------------------------------

    def run(self) -> None:
        wait = self.loop.wait
        while self.running:
            timeout = -1.0  # the C loop adds its own deadlines: delays, its buffered records
            if self.out:
                timeout = max(self.out_since + _FLUSH_AFTER - time.monotonic(), 0.0)
            if self.pending:
                timeout = 0.005 if timeout < 0 else min(timeout, 0.005)  # retry a full socket soon
            slow, control, closed = wait(timeout, _FLUSH_AFTER, _BATCH)
            self.stats["wakeups"] += 1
            for fd, nid, tid, nr, args, received in slow:
                lst = self.listeners.get(fd)
                if lst is not None:
                    self._on_slow(lst, nid, tid, nr, args, received)
            for fd in closed:
                lst = self.listeners.get(fd)
                if lst is not None:
                    self._close_listener(lst, "closed")
            if control:
                self._on_control()
            if self.pending:
                self._send_pending()
            if self._flush_due(woke_for_flush=not (slow or control or closed)):
                self._flush()
            if self.realtime and not self.delays and time.monotonic() > self.last_delay + _REALTIME_LINGER:
                _abi.set_normal()  # no delay for a while: switching on every delay would cost each one
                self.realtime = False
        self._shutdown()

    def _flush_due(self, woke_for_flush: bool) -> bool:
        """The C loop returns with nothing else to report when its buffered events are due (their
        count, or the oldest one's age): they must be sent then, or every later wait returns at
        once and the loop spins until the buffer fills."""
        if self.out and (len(self.out) >= _BATCH or time.monotonic() >= self.out_since + _FLUSH_AFTER):
            return True
        buffered = int(self.loop.stats()["buffered"])
        return buffered >= _BATCH or (woke_for_flush and buffered > 0)

    def _emit(self, event: tuple[Any, ...]) -> None:
        if not self.out:
            self.out_since = time.monotonic()
        self.out.append(event)

    # -- notifications with a rule ---------------------------------------------------------------

    def _on_slow(self, lst: Listener, nid: int, tid: int, nr: int, args: tuple[int, ...], received: float) -> None:
        self.stats["slow"] += 1
        a0, a1, a2, _a3, a4, a5 = args
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
                path = procmem.absolute(tid, _signed32(a0) if idx == 1 else -100, raw)
        if name in SOCKADDR_ARG1:
            addr = self.mem.read_sockaddr(tid, a1, a2)
            read_memory = True
        elif name == "sendto" and a4:
            addr = self.mem.read_sockaddr(tid, a4, a5)
            read_memory = True
        if read_memory and not self._still_valid(lst, nid):
            self.stats["dropped"] += 1
            return
        rules = lst.rules.get(nr)
        rule = self._decide(rules, path, addr) if rules else None
        pid = self.loop.process_of(tid)  # notif.pid is a thread id; events carry the process
        if rule is None or rule.kind not in _FIRING:
            self.loop.respond(lst.fd, nid, 0, _abi.FLAG_CONTINUE)
            if rule is not None:  # a trace rule: the call proceeds, recorded as traced by that rule
                self._emit((lst.svc_id, time.time(), pid, tid, name, rule.decision, path, addr, rule.id, 0))
                return
            self._emit((lst.svc_id, time.time(), pid, tid, name, "allow", path, addr, -1, 0))
            return
        event = (lst.svc_id, time.time(), pid, tid, name, rule.decision, path, addr, rule.id, 0)
        if rule.kind == K_DENY:
            self.loop.respond(lst.fd, nid, -rule.errno, 0)
            self.stats["denied"] += 1
            self._emit(event)
        elif rule.kind == K_DELAY:
            if not self.realtime:
                self.realtime = _abi.set_realtime()
            self.last_delay = time.monotonic()
            self.delay_seq += 1
            self.delays[self.delay_seq] = event
            self.loop.delay(lst.fd, nid, received + rule.delay, self.delay_seq)
            self.stats["delayed"] += 1
        else:  # K_HOLD
            self.held.setdefault(rule.tag, []).append((lst, nid, event))
            self.stats["held"] += 1
            self._emit(event)

    def _decide(self, rules: list[Rule], path: str | None, addr: str | None) -> Rule | None:
        """The first rule (newest first) that matches and passes its probability draw, else the
        first trace rule that matched (the call proceeds, recorded as traced)."""
        traced: Rule | None = None
        for rule in rules:
            if rule.path is not None:
                if path is None:
                    rule.unresolved += 1  # a path we could not resolve never counts as a match
                    continue
                if not path.startswith("/"):
                    if rule.path != SOCKET_PATH or not path.startswith("socket:"):
                        continue  # a socket, pipe or anonymous inode: not a file a glob can name
                elif not path_match(path, rule.path) and not path_match(os.path.dirname(path) + "/", rule.path):
                    continue
            elif path is not None and rule.kind != K_TRACE and is_system_path(path):
                continue  # without a path glob, a fault leaves the loader's and /dev, /proc files alone
            if rule.addr is not None and (addr is None or not any(field_match(addr, a) for a in rule.addr)):
                continue
            rule.matched += 1
            if rule.kind not in _FIRING:
                if rule.kind == K_TRACE and traced is None:
                    traced = rule
                continue
            if rule.occurrence < len(rule.fires):
                rule.occurrence += 1
                if rule.fires[rule.occurrence - 1] != "1":
                    continue
            elif rule.rng is not None and rule.rng.random() >= rule.prob:
                continue
            rule.fired += 1
            return rule
        if traced is not None:
            traced.fired += 1  # a trace "fires" by recording the call
        return traced

    def _still_valid(self, lst: Listener, nid: int) -> bool:
        try:
            fcntl.ioctl(lst.fd, _abi.IOCTL_NOTIF_ID_VALID, nid.to_bytes(8, "little"))
            return True
        except OSError:
            return False

    def _take_fired(self) -> None:
        """The events of the delays the C loop answered (a closed listener's were not answered)."""
        for token, ts, lateness in self.loop.take_fired():
            event = self.delays.pop(token)
            # Recorded when it proceeds: the event's time is the end of the delay.
            self._emit((event[0], ts, *event[2:9], round(lateness * 1000.0, 3)))

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
            self.loop.add(fd, svc_id)
            return True
        if op == "rules":
            _, svc_id, wire_rules, _req = msg
            target = self.by_svc.get(svc_id) or self.closed.get(svc_id)
            if target is None:
                raise ValueError(f"no service with id {svc_id}")
            return self._set_rules(target, wire_rules)
        if op == "sync":
            self._flush()
            return True
        if op == "release":
            _, tag, err, count, _req = msg
            return self._release(tag, err, count)
        if op == "cut":  # the service's test ended: its delayed syscalls go on now (holds end with their rules)
            kept = self.by_svc.get(msg[1])
            if kept is None:
                return 0
            cut = self.loop.cut_delays(kept.fd)
            self._flush()  # their events before the reply: the runner records them in the ending test
            return cut
        if op == "unregister":
            gone = self.by_svc.get(msg[1])
            if gone is not None:
                self._close_listener(gone, None)
            return True
        if op == "stats":
            fast = self.loop.stats()
            return dict(
                self.stats,
                fast=fast["fast"],
                notifications=fast["fast"] + fast["denied"] + fast["slow"],
                denied=self.stats["denied"] + fast["denied"],
                dropped=self.stats["dropped"] + fast["dropped"],
                send_failed=fast["send_failed"],
                pending_delays=fast["delays"],
                wake_late_us=fast["wake_late_ns"] // 1000,
                held_now=sum(len(v) for v in self.held.values()),
            )
        if op == "shutdown":
            self.running = False
            return True
        raise ValueError(f"unknown request {op!r}")

    def _set_rules(self, lst: Listener, wire_rules: list[tuple[Any, ...]]) -> dict[int, tuple[int, int, int]]:
        """Replace a service's rules; report the final counters of rules that went away."""
        self._flush()  # events decided under the old rules are sent while their ids are known
        old = {r.id: r for rules in lst.rules.values() for r in rules}
        live = self.listeners.get(lst.fd) is lst
        if live:
            self._take_hits(lst)
        table: dict[int, list[Rule]] = {}
        kept: dict[int, Rule] = {}
        for wire in wire_rules:
            rule = old.get(wire[0]) or Rule(wire)
            kept[rule.id] = rule
            for nr in rule.nrs:
                table.setdefault(nr, []).append(rule)
        lst.rules = table
        if live:
            # Only syscalls with a rule that can fire (or a trace) leave the C fast path; of those,
            # an unconditional deny as the newest rule is still answered in C.
            self.loop.set_slow(lst.fd, [nr for nr, rules in table.items() if any(r.kind in _SLOW for r in rules)])
            self.loop.set_fast_deny(
                lst.fd,
                [(nr, rules[0].id, rules[0].errno) for nr, rules in table.items() if _unconditional_deny(rules[0])],
            )
        gone = {rid: (r.matched, r.fired, r.unresolved) for rid, r in old.items() if rid not in kept}
        for rid in gone:
            self.rules.pop(rid, None)
        self.rules.update(kept)
        for rid, r in old.items():
            if rid not in kept and r.kind == K_HOLD:
                self._release(r.tag, 0, 0)  # a hold never outlives its rule
        return gone

    def _take_hits(self, lst: Listener) -> None:
        """Fold the counters of denies decided in C into their rules."""
        by_id = {r.id: r for rules in lst.rules.values() for r in rules}
        for rid, hits in self.loop.take_hits(lst.fd).items():
            rule = by_id.get(rid)
            if rule is not None:
                rule.matched += hits
                rule.fired += hits

    def _release(self, tag: str, err: int, count: int) -> int:
        queue = self.held.get(tag, [])
        take = queue if count <= 0 else queue[:count]
        self.held[tag] = [] if count <= 0 else queue[count:]
        for lst, nid, event in take:
            live = self.listeners.get(lst.fd) is lst
            if err:
                if live:
                    self.loop.respond(lst.fd, nid, -err, 0)
                decision = f"deny({errno.errorcode.get(err, err)})"
            else:
                if live:
                    self.loop.respond(lst.fd, nid, 0, _abi.FLAG_CONTINUE)
                decision = "allow"
            self._emit((event[0], time.time(), *event[2:5], decision, *event[6:8], event[8], 0))
        return len(take)

    def _close_listener(self, lst: Listener, why: str | None) -> None:
        if self.listeners.get(lst.fd) is not lst:
            return
        self._take_hits(lst)
        del self.listeners[lst.fd]
        self.by_svc.pop(lst.svc_id, None)
        self.closed[lst.svc_id] = lst  # its rules can still be removed, and their counts reported
        self.loop.remove(lst.fd)
        os.close(lst.fd)
        if why is not None:
            self._flush()  # the service's last events come before the notice
            self._queue(marshal.dumps(("closed", lst.svc_id, why)))

    # -- sending to the runner -----------------------------------------------------------------

    def _flush(self) -> None:
        """Send every event decided so far (C fast path and Python), in time order."""
        self._take_fired()
        names, rules = self.names, self.rules
        fast = [
            (svc_id, ts, pid, tid, names.get(nr) or f"syscall_{nr}",
             rules[rule].decision if rule >= 0 and rule in rules else "allow", _normal(path), addr, rule, 0)
            for svc_id, ts, pid, tid, nr, rule, path, addr in self.loop.drain()
        ]  # fmt: skip
        out = self.out
        self.out = []
        # Both lists are in time order; together they must be too (one thread's calls stay in order).
        batch = sorted(fast + out, key=lambda e: e[1]) if fast and out else fast or out
        for i in range(0, len(batch), _BATCH):
            self._queue_events(batch[i : i + _BATCH])

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

    def _shutdown(self) -> None:
        # Never leave a syscall parked: answer delays and holds, then let every listener go.
        self.loop.release_delays()  # those of a closed listener are dropped, not answered
        self.delays.clear()
        for queue in self.held.values():
            for lst, nid, _ in queue:
                self.loop.respond(lst.fd, nid, 0, _abi.FLAG_CONTINUE)
        for lst in list(self.listeners.values()):
            self._close_listener(lst, None)
        self.mem.close()


def _unconditional_deny(rule: Rule) -> bool:
    return rule.kind == K_DENY and rule.path is None and rule.addr is None and rule.rng is None


def _normal(path: str | None) -> str | None:
    """Relative paths joined in C are normalised here, off the syscall's critical path."""
    if path is not None and path.startswith("/") and ("/." in path or "//" in path):
        return os.path.normpath(path)
    return path


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when we stop
    _abi.die_with_parent()
    _abi.set_timer_slack_ns(1000)  # delays are timers: 1 µs of slack, not the default 50 µs
    runner = int(os.environ.get("FAULTBOX_RUNNER_PID", "0"))
    if runner and os.getppid() != runner:
        sys.exit("faultbox supervisor: the runner is gone")
    ctl = socket.socket(fileno=int(sys.argv[1]))
    Supervisor(ctl).run()


if __name__ == "__main__":
    main()
