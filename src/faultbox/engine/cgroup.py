"""Per-service cgroups (v2), when the machine lets us create them.

Process groups are the first tool for stopping a service; a cgroup also catches descendants that
left the group (a daemon that called setsid). When cgroup v2 is not writable (not root, no
delegation) everything still works with process groups alone.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path


def _cgroup2_root() -> Path | None:
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split(" - ")
                if len(parts) == 2 and parts[1].split()[0] == "cgroup2":
                    return Path(parts[0].split()[4])
    except OSError:
        return None
    return None


def _own_path() -> str:
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return "/"


class Cgroup:
    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def kill(self) -> None:
        """SIGKILL everything inside (cgroup.kill where the kernel has it)."""
        try:
            (self.path / "cgroup.kill").write_text("1")
            return
        except OSError:
            pass
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.005)


_trees = itertools.count()  # trees made by this process: the pytest plugin has one per spec file


class CgroupTree:
    """faultbox-<runner pid>/ (faultbox-<pid>-<n>/ for a process's later trees) with one child per
    service start. `announce` is told the base's path before it is made (the reaper's watch: a
    runner killed right after the mkdir leaves nothing)."""

    def __init__(self, announce: Callable[[str], None] | None = None) -> None:
        self.base: Path | None = None
        self._count = itertools.count(1)
        root = _cgroup2_root()
        if root is None:
            return
        n = next(_trees)
        base = root / _own_path().lstrip("/") / (f"faultbox-{os.getpid()}" + (f"-{n}" if n else ""))
        if announce is not None:
            announce(str(base))
        try:
            base.mkdir()
            self.base = base
        except OSError:
            self.base = None

    @property
    def available(self) -> bool:
        return self.base is not None

    def new(self, name: str) -> Cgroup | None:
        if self.base is None:
            return None
        path = self.base / f"{name}-{next(self._count)}"  # services may start in threads of their own
        try:
            path.mkdir()
        except OSError:
            return None
        return Cgroup(path)

    def close(self) -> None:
        if self.base is None:
            return
        for child in self.base.iterdir():
            if child.is_dir():
                group = Cgroup(child)
                group.kill()
                group.remove()
        Cgroup(self.base).remove()
        self.base = None
