"""Starting a service process through the shim, and stopping it.

Every service starts through the shim (engine/shim.c), in its own session and process group, with
PR_SET_PDEATHSIG, registered with the reaper and (when available) its own cgroup. A service with
syscalls to intercept gets a seccomp filter; its listener reaches the supervisor before the shim is
allowed to exec (DECISIONS §15, §21), so no intercepted syscall ever runs unsupervised.
"""

from __future__ import annotations

import os
import pwd
import select
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from faultbox._util.threads import LastingThread
from faultbox.engine.cgroup import Cgroup
from faultbox.engine.client import SupervisorClient, SupervisorError
from faultbox.engine.shim_build import find_or_build
from faultbox.errors import Code, InfraError
from faultbox.model.syscalls import native_table

_HANDSHAKE_TIMEOUT = 10.0


class LaunchError(InfraError):
    """The service could not be started; the message says why in the user's terms."""

    code = Code.LAUNCH_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(self.code, message)


@dataclass
class LaunchSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: str
    user: str | None = None
    syscalls: frozenset[str] = field(default_factory=frozenset)


class ServiceProcess:
    """A running service: its process group, pidfd and pipes. Never reaped before stop()."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], cgroup: Cgroup | None) -> None:
        self.name = name
        self.proc = proc
        self.pid = proc.pid
        self.pgid = proc.pid  # start_new_session: the service leads its own group
        self.pidfd = os.pidfd_open(proc.pid)
        self.cgroup = cgroup
        self.exit_code: int | None = None

    def alive(self) -> bool:
        """True until the main process exits (it is not reaped, so its pgid stays reserved)."""
        if self.exit_code is not None:
            return False
        r, _, _ = select.select([self.pidfd], [], [], 0)
        return not r

    def wait_exit(self, timeout: float) -> bool:
        if self.exit_code is not None:
            return True
        r, _, _ = select.select([self.pidfd], [], [], max(timeout, 0))
        return bool(r)

    def peek_exit_code(self) -> int | None:
        """The exit status of an exited (unreaped) process, without reaping it."""
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.exit_code
        if info is None:
            return None
        if info.si_code == os.CLD_EXITED:
            return info.si_status
        return -info.si_status

    def signal_group(self, sig: int) -> None:
        if self.exit_code is not None:
            return  # reaped: the pgid may belong to someone else now
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            pass

    def stop(self, grace: float, stop_signal: int = signal.SIGTERM) -> int:
        """stop_signal to the group, SIGKILL after `grace`, then reap. Returns the exit code.

        Descendants that left the group (PostgreSQL's backends each call setsid) are reached through
        the service's cgroup, or, without one, through a snapshot of its process tree."""
        if self.exit_code is not None:
            return self.exit_code
        tree = descendants(self.pid) if self.cgroup is None else []
        if self.alive():
            self.signal_group(stop_signal)
            self.wait_exit(grace)
        # Leftover members (and escapees) go now, while the leader is unreaped.
        self.signal_group(signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill()
        for pid, started in tree:
            if _start_time(pid) == started:  # the same process, not a reused pid
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        code = self.proc.wait()
        self.exit_code = code
        os.close(self.pidfd)
        if self.cgroup is not None:
            self.cgroup.remove()
        return code


def descendants(root: int) -> list[tuple[int, str]]:
    """(pid, start time) of every process below `root`, from one scan of /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[tuple[int, str]] = []
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        out.append((pid, _start_time(pid)))
        pending.extend(children.get(pid, []))
    return out


def _start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


# Every service is forked from this one thread: its PR_SET_PDEATHSIG ties it to the runner's
# process, not to whichever thread started it (services may start in threads of their own).
_FORKER = LastingThread("faultbox-forker")


def spawn(
    spec: LaunchSpec,
    supervisor: SupervisorClient | None,
    svc_id: int,
    cgroup: Cgroup | None,
) -> ServiceProcess:
    """Start the service; returns once it has exec'd (or raises LaunchError)."""
    arch, table = native_table()
    nrs = []
    for name in sorted(spec.syscalls):
        if name not in table:
            raise LaunchError(f"syscall {name!r} does not exist on this machine")
        nrs.append(table[name])
    if nrs and supervisor is None:
        raise LaunchError("internal: a filtered service needs the supervisor")
    ours, theirs = socket.socketpair()
    argv = [
        str(find_or_build()),
        str(theirs.fileno()),
        str(os.getpid()),
        hex(arch),
        ",".join(map(str, nrs)) or "-",
        "--",
        *spec.argv,
    ]
    kwargs: dict[str, object] = {}
    if spec.user is not None:
        pw = pwd.getpwnam(spec.user)
        if os.geteuid() != pw.pw_uid:
            kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    try:
        proc = _FORKER.call(
            lambda: subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(spec.env),
                cwd=spec.cwd,
                start_new_session=True,
                pass_fds=(theirs.fileno(),),
                **kwargs,  # type: ignore[call-overload]
            )
        )
    except OSError as exc:
        ours.close()
        theirs.close()
        raise LaunchError(f"cannot start {spec.argv[0]}: {exc.strerror or exc}") from None
    theirs.close()
    process = ServiceProcess(spec.name, proc, cgroup)
    try:
        _handshake(spec, process, ours, supervisor, svc_id, cgroup)
    except BaseException:
        process.stop(0.0)
        raise
    finally:
        ours.close()
    return process


def _handshake(
    spec: LaunchSpec,
    process: ServiceProcess,
    sock: socket.socket,
    supervisor: SupervisorClient | None,
    svc_id: int,
    cgroup: Cgroup | None,
) -> None:
    deadline = time.monotonic() + _HANDSHAKE_TIMEOUT
    line = _read_line(sock, deadline)
    if line.startswith("ERR "):
        raise LaunchError(line[4:])
    if line.startswith("FD "):
        assert supervisor is not None
        try:
            supervisor.register(svc_id, spec.name, process.pid, int(line[3:]))
        except SupervisorError as exc:
            raise LaunchError(f"the supervisor could not take the seccomp listener: {exc}") from None
    elif line != "NOFILTER":
        raise LaunchError(
            f"the service exited before starting (shim said {line!r})" if line else "the service exited before starting"
        )
    if cgroup is not None:
        try:
            cgroup.add(process.pid)
        except OSError:
            pass  # process groups still cover it
    sock.sendall(b"k")
    # EOF means exec succeeded (the shim's end is close-on-exec); a line means it failed.
    after = _read_line(sock, deadline)
    if after.startswith("ERR "):
        raise LaunchError(after[4:])


def _read_line(sock: socket.socket, deadline: float) -> str:
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LaunchError("the service did not finish starting within 10s (handshake timeout)")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()
