"""A test worker's own network and /tmp, so that tests running at once on one machine do not clash.

`isolate()` moves the calling process (before it starts any thread) into
- a network namespace of its own, with only a loopback interface, brought up: every test listens on
  the ports its spec names (9301, 18431, ...) without meeting another worker's services;
- a mount namespace of its own, where /tmp is an overlay: the machine's /tmp below (specs, scripts
  and files already there are readable), a private tmpfs above (everything written there - fixed
  paths such as /tmp/inventory.wal, the run's data directories - belongs to this worker alone).

Nothing is left on the machine: the namespaces and the tmpfs end with the last process inside them,
however the worker ends. Needs CAP_SYS_ADMIN (root), as the seccomp engine does.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct

from faultbox.errors import Code, InfraError

_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = struct.Struct("16sH14x")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


class IsolationError(InfraError):
    """This machine (or this user) cannot give a worker its own network and /tmp."""

    code = Code.ISOLATION_UNAVAILABLE

    def __init__(self, message: str) -> None:
        super().__init__(self.code, message)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        hint = " (it needs root, or CAP_SYS_ADMIN)" if err in (errno.EPERM, errno.EACCES) else ""
        raise IsolationError(f"{what}: {os.strerror(err)}{hint}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    def enc(s: str | None) -> bytes | None:
        return s.encode() if s is not None else None

    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {fstype or ''} on {target}")


def isolate() -> None:
    _check(_libc.unshare(_CLONE_NEWNET | _CLONE_NEWNS), "unshare(network, mount namespaces)")
    # Mounts made from here on stay in this namespace (the machine's root may be shared).
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE, None)
    try:
        _loopback_up()
    except OSError as exc:
        raise IsolationError(f"bringing up the loopback interface: {exc.strerror or exc}") from None
    _private_tmp()


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = _IFREQ.pack(b"lo", 0)
        flags = _IFREQ.unpack(fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | _IFF_UP))


def _private_tmp() -> None:
    # The machine's /tmp stays reachable through a descriptor opened before anything covers it;
    # the tmpfs mounted on /tmp holds the overlay's upper layer, which the overlay then covers.
    below = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY)
    try:
        _mount("faultbox-tmp", "/tmp", "tmpfs", 0, "mode=1777")
        for d in ("/tmp/.upper", "/tmp/.work"):
            os.mkdir(d, 0o755)
        os.chmod("/tmp/.upper", 0o1777)
        _mount(
            "faultbox-tmp",
            "/tmp",
            "overlay",
            0,
            f"lowerdir=/proc/self/fd/{below},upperdir=/tmp/.upper,workdir=/tmp/.work",
        )
    finally:
        os.close(below)


def check_available() -> None:
    """Raises IsolationError when a worker could not isolate itself (tried in a child process, so
    this process keeps its own namespaces)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: try, report, leave without running any Python cleanup
        code = 1
        try:
            os.close(read)
            isolate()
            code = 0
        except BaseException as exc:  # whatever happens, this copy of the runner goes no further
            try:
                os.write(write, str(exc).encode()[:4000] or type(exc).__name__.encode())
            except BaseException:
                pass
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        why = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if why or status != 0:
        raise IsolationError(why or f"the probe ended with status {status}")
