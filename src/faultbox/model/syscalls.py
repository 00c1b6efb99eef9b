"""Syscall names, families and argument kinds, per architecture (DECISIONS §14)."""

from __future__ import annotations

import platform

from faultbox.model.syscall_table import AARCH64, X86_64

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_AARCH64 = 0xC00000B7

# A fault keyword names a family: the syscalls a program may use for the same operation.
FAMILIES: dict[str, tuple[str, ...]] = {
    "write": ("write", "writev", "pwrite64", "pwritev", "pwritev2"),
    "read": ("read", "readv", "pread64", "preadv", "preadv2"),
    "open": ("open", "openat", "openat2"),
    "openat": ("open", "openat", "openat2"),
    "fsync": ("fsync", "fdatasync"),
    "sendto": ("sendto", "sendmsg", "sendmmsg"),
    "recvfrom": ("recvfrom", "recvmsg", "recvmmsg"),
    "connect": ("connect",),
}

# Syscalls whose argument is a path string, and the index of that argument.
PATH_ARG: dict[str, int] = {
    "open": 0,
    "creat": 0,
    "openat": 1,
    "openat2": 1,
    "mkdirat": 1,
    "unlinkat": 1,
    "faccessat": 1,
    "faccessat2": 1,
    "newfstatat": 1,
    "readlinkat": 1,
    "renameat": 1,
    "renameat2": 1,
    "linkat": 1,
    "symlinkat": 0,
    "mkdir": 0,
    "unlink": 0,
    "rmdir": 0,
    "stat": 0,
    "lstat": 0,
    "access": 0,
    "truncate": 0,
    "chmod": 0,
    "rename": 0,
}

# Syscalls whose first argument is a file descriptor we resolve to a path through /proc.
FD_ARG0 = frozenset(
    {
        "write",
        "writev",
        "pwrite64",
        "pwritev",
        "pwritev2",
        "read",
        "readv",
        "pread64",
        "preadv",
        "preadv2",
        "fsync",
        "fdatasync",
        "ftruncate",
        "fallocate",
        "fchmod",
        "fchown",
        "close",
        "sendto",
        "sendmsg",
        "sendmmsg",
        "recvfrom",
        "recvmsg",
        "recvmmsg",
        "connect",
    }
)

# Syscalls that only ever act on sockets: a path glob means nothing for them.
SOCKET_ONLY = frozenset({"connect", "sendto", "sendmsg", "sendmmsg", "recvfrom", "recvmsg", "recvmmsg", "bind"})

# The path glob of a rule that selects calls on sockets (an fd whose link reads "socket:[inode]"),
# whatever the socket: a scheduled parallel() holds sends with it.
SOCKET_PATH = "socket:*"
# What a scheduled parallel() holds on sockets: the calls that send (runner/schedule.py).
SCHEDULED_SYSCALLS = ("connect", "sendto", "sendmsg", "write", "writev")

# Syscalls a `path=` glob can select: path arguments, and fds that may name files.
PATH_SELECTABLE = (frozenset(PATH_ARG) | FD_ARG0) - SOCKET_ONLY

# Syscalls whose second argument is a socket address (the destination).
SOCKADDR_ARG1 = frozenset({"connect", "bind"})

# Paths a program touches to run at all (the dynamic loader, /proc, devices). A rule without a
# path glob does not fault them, or a 100% openat fault would stop the program from starting.
SYSTEM_PATH_PREFIXES = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/", "/proc/", "/sys/", "/dev/", "/etc/ld.so.")


def native_table() -> tuple[int, dict[str, int]]:
    """(audit arch, name -> number) for the machine we run on."""
    machine = platform.machine()
    if machine in ("x86_64", "AMD64"):
        return AUDIT_ARCH_X86_64, X86_64
    if machine in ("aarch64", "arm64"):
        return AUDIT_ARCH_AARCH64, AARCH64
    raise OSError(f"syscall faults are not supported on {machine}; faultbox supports x86_64 and aarch64")


def known_syscalls() -> frozenset[str]:
    """Every syscall name valid as a fault keyword on this machine."""
    try:
        return frozenset(native_table()[1])
    except OSError:
        return frozenset(X86_64)


def expand(keyword: str) -> tuple[str, ...]:
    """The syscalls a fault keyword covers on this machine (families expanded, unknowns dropped)."""
    names = FAMILIES.get(keyword, (keyword,))
    known = known_syscalls()
    return tuple(n for n in names if n in known)


def is_system_path(path: str) -> bool:
    return path.startswith(SYSTEM_PATH_PREFIXES)
