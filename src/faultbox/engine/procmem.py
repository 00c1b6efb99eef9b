"""Reading a stopped target's arguments: path strings and socket addresses from its memory, and the
path behind a file descriptor.

A notified thread is parked in its syscall, so its memory is stable while we read; the caller checks
the notification is still valid afterwards (ID_VALID) before trusting what it read. /proc/<tid>/mem
fds are cached per thread id; a failed or empty read drops the cached fd and retries once, which
covers a task that exec'd (its old memory reads as empty) and a thread id reused by a new task.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections import OrderedDict

_MAX_PATH = 4096
_PAGE = 4096
_CACHE_LIMIT = 256
_AT_FDCWD = -100


class MemReader:
    def __init__(self) -> None:
        self._fds: OrderedDict[int, int] = OrderedDict()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _fd(self, tid: int) -> int:
        fd = self._fds.get(tid)
        if fd is not None:
            self._fds.move_to_end(tid)
            return fd
        fd = os.open(f"/proc/{tid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        self._fds[tid] = fd
        if len(self._fds) > _CACHE_LIMIT:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def _drop(self, tid: int) -> None:
        fd = self._fds.pop(tid, None)
        if fd is not None:
            os.close(fd)

    def read(self, tid: int, addr: int, size: int) -> bytes | None:
        if addr == 0:
            return None
        for _ in range(2):
            try:
                data = os.pread(self._fd(tid), size, addr)
            except OSError:
                data = b""
            if data:
                return data
            # An fd opened before the task exec'd reads its old, gone memory as empty: reopen once.
            self._drop(tid)
        return None

    def read_string(self, tid: int, addr: int) -> str | None:
        """A NUL-terminated string at addr (reads in chunks; paths are usually short)."""
        out = b""
        while len(out) < _MAX_PATH:
            at = addr + len(out)
            # Never read across a page boundary in one go: the next page may be unmapped.
            chunk = min(256 if not out else _PAGE, _PAGE - at % _PAGE)
            data = self.read(tid, at, chunk)
            if not data:
                return None
            nul = data.find(b"\0")
            if nul >= 0:
                return (out + data[:nul]).decode("utf-8", "surrogateescape")
            out += data
        return None

    def read_sockaddr(self, tid: int, addr: int, length: int) -> str | None:
        """ "ip:port", "[ip6]:port", or a unix socket path."""
        data = self.read(tid, addr, min(max(length, 2), 128))
        if not data or len(data) < 2:
            return None
        family = struct.unpack_from("<H", data)[0]
        if family == socket.AF_INET and len(data) >= 8:
            port = struct.unpack_from(">H", data, 2)[0]
            return f"{socket.inet_ntoa(data[4:8])}:{port}"
        if family == socket.AF_INET6 and len(data) >= 24:
            port = struct.unpack_from(">H", data, 2)[0]
            return f"[{ipaddress.IPv6Address(data[8:24])}]:{port}"
        if family == socket.AF_UNIX:
            path = data[2:].split(b"\0", 1)[0]
            return "unix:" + path.decode("utf-8", "surrogateescape") if path else "unix:"
        return None


def fd_path(tid: int, fd: int) -> str | None:
    """What a file descriptor of the target refers to ("/tmp/x", "socket:[123]", "pipe:[9]")."""
    if fd < 0 or fd > 1 << 20:
        return None
    try:
        return os.readlink(f"/proc/{tid}/fd/{fd}")
    except OSError:
        return None


def absolute(tid: int, dirfd: int, path: str) -> str:
    """A path argument made absolute against the target's cwd or dirfd, when it is relative."""
    if path.startswith("/"):
        return path
    if dirfd == _AT_FDCWD or dirfd == (1 << 32) + _AT_FDCWD or dirfd == (1 << 64) + _AT_FDCWD:
        try:
            base = os.readlink(f"/proc/{tid}/cwd")
        except OSError:
            return path
    else:
        found = fd_path(tid, dirfd)
        if found is None or not found.startswith("/"):
            return path
        base = found
    return os.path.normpath(os.path.join(base, path))
