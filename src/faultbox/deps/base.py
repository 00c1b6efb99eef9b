"""What every real data server needs: the process description, errors, ports and binary lookup.

The runner owns processes (it spawns them under its supervisor, maybe under a seccomp filter, and
stops them). So the functions of this package only prepare a data directory and *describe* a server:
argv, env, cwd, OS user, how to stop it gracefully and how to check that it answers. None of them
starts a long-lived process.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import shutil
import socket
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from faultbox.errors import Code, InfraError

LOCALHOST = "127.0.0.1"

#: The project's setup command, named by every "missing dependency" message.
SETUP_COMMAND = "./scripts/setup"


class DependencyError(InfraError):
    """A real data server cannot be prepared or does not answer."""

    code = Code.LAUNCH_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(self.code, message)


class DependencyMissing(DependencyError):
    """The server's binary is not installed. `package` names what to install."""

    code = Code.DEPENDENCY_MISSING

    def __init__(self, message: str, package: str) -> None:
        super().__init__(message)
        self.package = package


class DependencyNotReady(DependencyError):
    """One readiness probe failed; the message carries the last error seen."""


class PortInUse(DependencyError):
    """The port a server should listen on is already taken."""

    code = Code.PORT_IN_USE

    def __init__(self, port: int, holder: str | None = None) -> None:
        who = f" by {holder}" if holder else ""
        super().__init__(f"port {port} on {LOCALHOST} is already in use{who}")
        self.port = port
        self.holder = holder


Probe = Callable[[float], None]


@dataclass(frozen=True)
class ServerPlan:
    """How to run one server. The runner spawns `argv` itself.

    Launch: `Popen(argv, env={**runner_env, **env}, cwd=cwd, user=user, group=group,
    extra_groups=[] if user else None, start_new_session=True)`, then call `probe()` in a loop until a
    deadline. Stop: send `stop_signal` to the process group, wait `stop_grace` seconds, then SIGKILL.
    A plan can be launched again after a stop (or a crash): the server restarts on the same data dir.
    Beware: PostgreSQL's children call setsid(), so a killpg() on the postmaster's group reaches the
    postmaster only; its children exit when they notice it died. A runner that must be sure nothing
    survives tracks descendants (e.g. PR_SET_CHILD_SUBREAPER) rather than the process group.
    """

    kind: str  # "postgres", "redis" or "kafka"
    argv: tuple[str, ...]  # absolute binary path first
    env: Mapping[str, str] = field(hash=False)  # extra environment; the runner merges it over its own
    cwd: str
    user: str | None  # OS user to run as; None = the current user
    group: str | None  # primary group of `user` (set it too: Popen(user=) alone keeps root's gid)
    data_dir: str  # owned by `user`, inside the workdir given to prepare()
    stop_signal: int  # graceful stop
    stop_grace: float  # seconds to wait after stop_signal before SIGKILL
    port: int
    endpoint: str  # what a client connects to: a PostgreSQL DSN, a redis:// URL, a Kafka bootstrap
    prober: Probe = field(repr=False, compare=False)

    def probe(self, timeout: float) -> None:
        """One readiness attempt through the server's protocol; raises DependencyNotReady."""
        self.prober(timeout)


def frozen_env(env: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(env or {}))


def wait_ready(
    plan: ServerPlan,
    timeout: float,
    *,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.005,
) -> float:
    """Probe until the server answers; return the seconds it took.

    For tests and benchmarks (the runner has its own loop). `alive` lets a dead process end the
    wait at once instead of at the deadline.
    """
    start = time.monotonic()
    deadline = start + timeout
    last: Exception | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DependencyNotReady(f"{plan.kind} on port {plan.port} not ready after {timeout:g}s: {last}")
        if alive is not None and not alive():
            raise DependencyNotReady(f"{plan.kind} on port {plan.port} exited while starting: {last}")
        try:
            plan.probe(min(remaining, 1.0))
            return time.monotonic() - start
        except DependencyNotReady as exc:
            last = exc
        time.sleep(min(interval, max(deadline - time.monotonic(), 0)))


# ---------------------------------------------------------------------------------------------
# Ports


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    """Whether a server could not bind 127.0.0.1:port right now.

    SO_REUSEADDR as the servers set it: a socket lingering in TIME_WAIT does not count, a listener
    on the port (on 127.0.0.1 or on 0.0.0.0) does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOCALHOST, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def port_holder(port: int) -> str | None:
    """'pid N (cmdline)' of the process listening on `port`, found through /proc; None if unknown."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or not ours to read
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") in targets:
                    return f"pid {pid} ({_cmdline(pid)})"
            except OSError:
                continue
    return None


def check_port_free(port: int) -> None:
    """Raise PortInUse, naming the holder when /proc tells, if `port` is taken.

    Done before a launch because a stale server on the port would answer the readiness probe.
    """
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    if port_in_use(port):
        raise PortInUse(port, port_holder(port))


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            # cols: sl local_address rem_address st ... inode (column 9); state 0A = LISTEN
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def _cmdline(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    text = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return text[:200] or "?"


# ---------------------------------------------------------------------------------------------
# Binaries


def find_executable(name: str, search_path: Sequence[str] | None, default_dirs: Sequence[str] = ()) -> str | None:
    """Absolute path of executable `name`.

    With `search_path`, only those directories are searched (tests point it at an empty directory to
    simulate a missing install); otherwise `default_dirs`, then $PATH.
    """
    dirs = list(search_path) if search_path is not None else [*default_dirs, *_path_dirs()]
    for directory in dirs:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    return None


def _path_dirs() -> list[str]:
    return [d for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if d]


# ---------------------------------------------------------------------------------------------
# OS users and directories


@dataclass(frozen=True)
class Owner:
    """The OS identity a server runs as."""

    user: str | None  # None: the current user, no switch
    group: str | None
    uid: int
    gid: int


def current_owner() -> Owner:
    return Owner(None, None, os.getuid(), os.getgid())


def server_owner(os_user: str, package: str) -> Owner:
    """`os_user` when running as root (servers like PostgreSQL refuse root), else the current user."""
    if os.geteuid() != 0:
        return current_owner()
    try:
        entry = pwd.getpwnam(os_user)
    except KeyError:
        raise DependencyMissing(
            f"the OS user {os_user!r} does not exist; it comes with the Debian package {package}: "
            f"run {SETUP_COMMAND} (or apt-get install -y {package})",
            package,
        )
    return Owner(os_user, grp.getgrgid(entry.pw_gid).gr_name, entry.pw_uid, entry.pw_gid)


def fresh_dir(path: Path, owner: Owner, mode: int = 0o700) -> None:
    """An empty directory at `path`, owned by `owner` (an older one is removed first)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, mode=mode)
    os.chmod(path, mode)
    if (os.stat(path).st_uid, os.stat(path).st_gid) != (owner.uid, owner.gid):
        os.chown(path, owner.uid, owner.gid)


def ensure_reachable(workdir: Path, target: Path, owner: Owner) -> None:
    """Make sure `owner` can reach `target` (under `workdir`) through every parent directory.

    The workdir is often made by mkdtemp (mode 0700, root): we add the search bit for others on it
    (search only, no listing). Directories above it are not ours to change: a clear error says which.
    """
    if owner.user is None:
        return
    workdir = workdir.resolve()
    st = os.stat(workdir)
    if not _can_search(st, owner):
        os.chmod(workdir, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
    for parent in workdir.parents:
        if not _can_search(os.stat(parent), owner):
            raise DependencyError(
                f"the OS user {owner.user!r} cannot reach {target}: {parent} is not searchable for it "
                f"(mode {stat.S_IMODE(os.stat(parent).st_mode):o}); use a workdir under /tmp or /var/tmp, "
                f"or run chmod o+x {parent}"
            )


def _can_search(st: os.stat_result, owner: Owner) -> bool:
    if owner.uid == 0:
        return True
    mode = st.st_mode
    if st.st_uid == owner.uid:
        return bool(mode & stat.S_IXUSR)
    groups = set(os.getgrouplist(owner.user, owner.gid)) if owner.user else {owner.gid}
    if st.st_gid in groups:
        return bool(mode & stat.S_IXGRP)
    return bool(mode & stat.S_IXOTH)
