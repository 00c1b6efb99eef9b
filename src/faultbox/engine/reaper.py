"""The reaper: makes sure no service outlives the run, even if the runner is killed with SIGKILL.

The runner starts it once per run, in its own session, and tells it over a pipe about every process
group and cgroup it creates ("+pg 123", "-pg 123", "+cg /sys/fs/cgroup/...", "-cg ...") and the run's
temporary directory ("+dir /tmp/faultbox-run-..."). When the pipe closes without "bye" - the runner
died - the reaper kills every group and cgroup it still knows, removes the cgroups, then the
directories (data directories of servers it just killed among them), and exits. Terminal
signals do not reach it; only the pipe matters.

Run as `python -m faultbox.engine.reaper` with the pipe on stdin.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from faultbox.engine.cgroup import Cgroup


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    cgroups: set[str] = set()
    dirs: set[str] = set()
    clean_exit = False
    for raw in sys.stdin:
        line = raw.strip()
        if line == "bye":
            clean_exit = True
            break
        op, _, arg = line.partition(" ")
        if op == "+pg":
            groups.add(int(arg))
        elif op == "-pg":
            groups.discard(int(arg))
        elif op == "+cg":
            cgroups.add(arg)
        elif op == "-cg":
            cgroups.discard(arg)
        elif op == "+dir":
            dirs.add(arg)
        elif op == "-dir":
            dirs.discard(arg)
    if clean_exit and not groups and not cgroups:
        return
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for path in sorted(cgroups, key=len, reverse=True):
        _remove_tree(Path(path))
    if not clean_exit:
        for path in dirs:
            shutil.rmtree(path, ignore_errors=True)


def _remove_tree(path: Path) -> None:
    """Kill a cgroup's processes and remove it with every cgroup below it, deepest first: a service's
    cgroup is made before the runner can announce it, so a runner killed in between leaves one the
    reaper was never told about inside the run's own."""
    group = Cgroup(path)
    group.kill()  # cgroup.kill reaches the cgroups below too
    try:
        children = [child for child in path.iterdir() if child.is_dir()]
    except OSError:
        children = []
    for child in children:
        _remove_tree(child)
    group.remove(timeout=5.0)


class ReaperClient:
    """The runner's handle on its reaper."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "faultbox.engine.reaper"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # out of reach of the terminal's Ctrl-C
        )

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        with self._lock:
            try:
                self.proc.stdin.write(line.encode() + b"\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass

    def watch_group(self, pgid: int) -> None:
        self._send(f"+pg {pgid}")

    def forget_group(self, pgid: int) -> None:
        self._send(f"-pg {pgid}")

    def watch_cgroup(self, path: str) -> None:
        self._send(f"+cg {path}")

    def forget_cgroup(self, path: str) -> None:
        self._send(f"-cg {path}")

    def watch_dir(self, path: str) -> None:
        """Remove this directory if the runner dies (it removes it itself otherwise)."""
        self._send(f"+dir {path}")

    def forget_dir(self, path: str) -> None:
        self._send(f"-dir {path}")

    def close(self) -> None:
        """A clean goodbye: everything it watched was already stopped by the runner."""
        self._send("bye")
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()


if __name__ == "__main__":
    main()
