"""No process outlives its run, even when the runner is killed with SIGKILL (DECISIONS §16)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support import FIXTURES, cmdline, descendants_alive, free_port, process_tree


def _children(pid: int) -> list[int]:
    return [p for p in process_tree(pid) if p != pid]


def _wait(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_sigkill_of_the_runner_leaves_no_process(tmp_path: Path) -> None:
    p1, p2 = free_port(), free_port()
    spec = tmp_path / "spec.star"
    spec.write_text(
        f"""
a = service("a", "{sys.executable}", interface("main", "tcp", {p1}), args = ["{FIXTURES}/svc.py"],
    env = {{"PORT": "{p1}", "CHILDREN": "2", "PIDFILE": "{tmp_path}/a.pids"}}, healthcheck = tcp("127.0.0.1:{p1}"))
b = service("b", "{sys.executable}", interface("main", "tcp", {p2}), args = ["{FIXTURES}/svc.py"],
    env = {{"PORT": "{p2}", "CHILDREN": "1", "IGNORE_TERM": "1", "PIDFILE": "{tmp_path}/b.pids"}},
    healthcheck = tcp("127.0.0.1:{p2}"))

def test_forever():
    fault(b, write = delay("1ms"), run = lambda: sleep("60s"))
"""
    )
    tmpdir = tmp_path / "tmp"  # where the run's temporary directory is made, to see it go
    tmpdir.mkdir()
    runner = subprocess.Popen(
        [sys.executable, "-m", "faultbox", "test", str(spec)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(tmpdir)},
    )
    try:
        assert _wait(lambda: (tmp_path / "a.pids").exists() and (tmp_path / "b.pids").exists(), 20)
        time.sleep(0.5)  # the fault is being applied; the body sleeps
        services = [int(p) for f in ("a.pids", "b.pids") for p in (tmp_path / f).read_text().split()]
        helpers = _children(runner.pid)
        supervisor = [p for p in helpers if "faultbox.engine.supervisor" in cmdline(p)]
        assert supervisor, "a filtered service runs under the supervisor process"
        reaper = [p for p in helpers if "faultbox.engine.reaper" in cmdline(p)]
        assert reaper, "the reaper runs beside the runner"
        proxy = [p for p in helpers if "faultbox.proxy.worker" in cmdline(p)]
        assert proxy, "the tcp interfaces' proxies run in the proxy worker"
        assert len(descendants_alive(services)) == 5
        assert list(tmpdir.glob("faultbox-run-*")), "the run works in a temporary directory"
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
        gone = _wait(lambda: not descendants_alive(services + supervisor + proxy), 10)
        survivors = descendants_alive(services + supervisor + proxy)
        assert gone, f"survivors: {[(p, cmdline(p)) for p in survivors]}"
        assert _wait(lambda: not descendants_alive(reaper), 10), "the reaper exits once its work is done"
        leftover = list(Path("/sys/fs/cgroup/unified").glob(f"faultbox-{runner.pid}*"))
        assert leftover == []
        assert list(tmpdir.glob("faultbox-run-*")) == [], "the reaper removes the run's temporary directory"
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
