"""An idle supervisor sleeps: a few recorded calls waiting to be sent must not keep its loop awake."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from faultbox.engine.client import EventBatch, SupervisorClient
from faultbox.engine.launch import LaunchSpec, spawn
from support import wait_until

# Three intercepted calls (allowed, recorded: fewer than a batch), then nothing.
SCRIPT = "import os, sys, time\n[os.getppid() for _ in range(3)]\nprint('done', flush=True)\ntime.sleep(60)\n"


def test_a_few_buffered_events_are_sent_and_the_loop_then_sleeps(tmp_path: Path) -> None:
    received: list[EventBatch] = []
    client = SupervisorClient(received.append, lambda svc_id, why: None, lambda why: None)
    spec = LaunchSpec(
        "idle", [sys.executable, "-c", SCRIPT], dict(os.environ), str(tmp_path), syscalls=frozenset({"getppid"})
    )
    proc = spawn(spec, client, 1, None)
    try:
        assert proc.proc.stdout is not None
        assert proc.proc.stdout.readline().strip() == b"done"
        # Sent without being asked (no sync): the buffer's age is enough.
        wait_until(
            lambda: sum(1 for batch in received for e in batch if e[4] == "getppid") >= 3, "the calls arrive", 10
        )
        before = client.stats()["wakeups"]
        time.sleep(1.0)  # the interval being measured: nothing happens in it
        woke = client.stats()["wakeups"] - before
        assert woke < 50, f"the supervisor's loop woke {woke} times in an idle second"
    finally:
        proc.stop(1.0)
        client.close()
