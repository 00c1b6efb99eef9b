"""Launching through the shim and stopping: errors reported, escaped descendants still stopped."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from faultbox.engine.launch import LaunchError, LaunchSpec, spawn
from support import descendants_alive

ESCAPER = """
import os, sys, time
pid = os.fork()
if pid == 0:
    os.setsid()              # leaves the service's process group, as PostgreSQL's backends do
    print(os.getpid(), flush=True)
    time.sleep(60)
    os._exit(0)
time.sleep(60)
"""


def test_descendant_that_left_the_group_is_stopped_without_cgroup() -> None:
    proc = spawn(LaunchSpec("esc", [sys.executable, "-c", ESCAPER], dict(os.environ), "/tmp"), None, 0, None)
    assert proc.proc.stdout is not None
    child = int(proc.proc.stdout.readline())
    assert descendants_alive([child]) == [child]
    assert os.getpgid(child) != proc.pgid
    proc.stop(0.2)
    end = time.monotonic() + 5
    while descendants_alive([child]) and time.monotonic() < end:
        time.sleep(0.02)
    assert descendants_alive([child]) == []


def test_missing_binary_is_reported_by_the_shim() -> None:
    with pytest.raises(LaunchError, match="binary not found or not executable: no-such-program"):
        spawn(LaunchSpec("x", ["no-such-program"], dict(os.environ), "/tmp"), None, 0, None)


def test_exit_code_and_signal(tmp_path: Path) -> None:
    proc = spawn(LaunchSpec("x", ["/bin/sh", "-c", "exit 7"], dict(os.environ), str(tmp_path)), None, 0, None)
    assert proc.wait_exit(5)
    assert proc.peek_exit_code() == 7 and proc.alive() is False
    assert proc.stop(1) == 7
