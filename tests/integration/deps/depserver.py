"""Launch a real server from a ServerPlan the way the runner does, and prove nothing is left behind.

Used by this directory's tests (through conftest.py) and by bench/bench_deps.py. `Server(plan).start()`
spawns plan.argv as plan.user in a new session (its own process group) and probes it until ready;
`stop()` sends the plan's stop signal, SIGKILLs after the grace, and asserts that no process of the
server's tree (its group and its descendants) is still alive.

A server dies with the thread that started it (setpriv --pdeathsig, from util-linux): a test run
that is killed or interrupted before its teardown leaves no server behind. The runner's launcher
does the same for the servers of a real run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

try:
    import faultbox.deps  # noqa: F401
except ImportError:  # not installed into the venv: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "src"))

from faultbox.deps import ServerPlan, wait_ready

# execs the server in place (same pid) with SIGKILL as its parent-death signal, which survives the
# exec and the switch to plan.user
_DIE_WITH_PARENT = ("setpriv", "--pdeathsig", "KILL", "--") if shutil.which("setpriv") else ()


def _processes() -> dict[int, tuple[str, int, int]]:
    """pid -> (state, ppid, pgrp) of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        out[int(entry)] = (fields[0], int(fields[1]), int(fields[2]))
    return out


def tree(leader: int) -> set[int]:
    """The leader, its process group, and all its descendants.

    Descendants matter: PostgreSQL's children call setsid(), so they are *not* in the postmaster's
    process group and a killpg() on it does not reach them (they exit when they notice the
    postmaster died).
    """
    procs = _processes()
    found = {leader} | {pid for pid, (_, _, pgrp) in procs.items() if pgrp == leader}
    grew = True
    while grew:
        children = {pid for pid, (_, ppid, _) in procs.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return found


def alive(pids: set[int]) -> list[int]:
    """Those of `pids` still running (zombies waiting for a reaper do not count)."""
    procs = _processes()
    return sorted(pid for pid in pids if pid in procs and procs[pid][0] != "Z")


class Server:
    """One running server, started from a plan. Restartable on the same data dir."""

    def __init__(self, plan: ServerPlan) -> None:
        self.plan = plan
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(plan.cwd) / "server.log"
        self.ready_seconds = 0.0

    def start(self, timeout: float = 20.0) -> Server:
        plan = self.plan
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                (*_DIE_WITH_PARENT, *plan.argv),
                env={**os.environ, **plan.env},
                cwd=plan.cwd,
                user=plan.user,
                group=plan.group,
                extra_groups=[] if plan.user else None,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proc = self.proc
        try:
            self.ready_seconds = wait_ready(plan, timeout, alive=lambda: proc.poll() is None)
        except Exception as exc:
            self.kill()
            raise AssertionError(f"{exc}\n--- server log ---\n{self.log_tail()}") from exc
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole group and wait for the leader (a crash, as far as the server knows)."""
        if self.proc is None:
            return
        pids = tree(self.proc.pid)
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.proc = None
        _reap(pids, 10.0)

    def stop(self) -> str:
        """Graceful stop; returns "graceful" or "killed". Asserts the group is gone."""
        if self.proc is None:
            return "stopped"
        pid = self.proc.pid
        pids = tree(pid)
        how = "graceful"
        try:
            os.killpg(pid, self.plan.stop_signal)
            self.proc.wait(timeout=self.plan.stop_grace)
            if not _wait_gone(pids, self.plan.stop_grace):
                how = "killed"
        except subprocess.TimeoutExpired:
            how = "killed"
        except ProcessLookupError:
            pass
        if how == "killed":
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self.proc = None
        _reap(pids, 5.0)
        return how

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def _wait_gone(pids: set[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _reap(pids: set[int], timeout: float) -> None:
    """Wait for every process of the server's tree to end; SIGKILL stragglers (by pid: all are ours)
    and fail the test, since a server that leaves processes behind is a bug worth seeing."""
    if _wait_gone(pids, timeout):
        return
    left = alive(pids)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    raise AssertionError(f"processes left behind after stopping the server: {left}")
