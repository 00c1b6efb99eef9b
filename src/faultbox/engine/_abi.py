"""The seccomp user-notification ABI (little-endian, 64-bit) and the few raw syscalls we need.

struct seccomp_notif { u64 id; u32 pid; u32 flags; struct seccomp_data { s32 nr; u32 arch;
u64 instruction_pointer; u64 args[6]; } data; }                                          80 bytes
struct seccomp_notif_resp { u64 id; s64 val; s32 error; u32 flags; }                     24 bytes
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct

NOTIF = struct.Struct("<QIIiIQ6Q")
RESP = struct.Struct("<QqiI")
assert NOTIF.size == 80 and RESP.size == 24

# ioctl numbers: _IOWR('!', 0, seccomp_notif), _IOWR('!', 1, resp), _IOW('!', 2, u64), _IOW('!', 4, u64)
IOCTL_NOTIF_RECV = 0xC0502100
IOCTL_NOTIF_SEND = 0xC0182101
IOCTL_NOTIF_ID_VALID = 0x40082102
IOCTL_NOTIF_SET_FLAGS = 0x40082104

FLAG_CONTINUE = 1  # SECCOMP_USER_NOTIF_FLAG_CONTINUE
FD_SYNC_WAKE_UP = 1  # SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP

_SYS_PIDFD_GETFD = {"x86_64": 438, "aarch64": 438}

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    """A copy of another process's fd (needs ptrace-attach permission over it)."""
    nr = _SYS_PIDFD_GETFD.get(platform.machine(), 438)
    fd = _syscall(ctypes.c_long(nr), ctypes.c_int(pidfd), ctypes.c_int(target_fd), ctypes.c_uint(0))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(fd)


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def die_with_parent(sig: int = 9) -> None:
    """Ask the kernel to kill this process when its parent exits."""
    if _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def set_child_subreaper() -> None:
    """Orphaned descendants are re-parented to this process instead of init."""
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


PR_SET_TIMERSLACK = 29


def set_timer_slack_ns(ns: int) -> None:
    """How late the kernel may wake this process's timers (default 50 µs)."""
    _libc.prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0)


def set_realtime(priority: int = 1) -> bool:
    """Run the calling thread under SCHED_FIFO (not inherited by children): it then never waits for
    the CPU behind ordinary tasks. False when not allowed (no CAP_SYS_NICE)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
    except OSError:
        return False
    return True


def set_normal() -> None:
    """Back to the ordinary policy (SCHED_OTHER) after set_realtime()."""
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except OSError:
        pass
