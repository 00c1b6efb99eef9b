"""Causal ingestion: an event enters the trace after the events that must precede it.

Events reach the trace from several threads: the supervisor's reader (syscalls), the I/O pump (log
lines), the WAL source (row changes), the topic source (messages). A log line is written after the
syscalls its service made before it; a row change is committed after the database's writes; a
message about an order is published after the order's commit. So before a line, a row change or a
message is appended, the faster sources it depends on are flushed:

    log line     <- syscalls, wal events   (supervisor sync, WAL barrier)
    wal event    <- syscalls
    topic event  <- syscalls, wal events (WAL barrier: decoded up to the current flush LSN)

One flush covers every event received before it started, so bursts cost one round trip. Two log
lines from different services have no such order: between them, only step boundaries (the barrier
after every step) order the trace.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Presync:
    """Runs `flush` so that it started after a given receive time; concurrent callers share one."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._lock = threading.Lock()
        self._last_start = float("-inf")

    def after(self, received: float) -> None:
        if self._last_start >= received:
            return
        with self._lock:
            if self._last_start >= received:
                return  # someone flushed while we waited for the lock
            start = time.monotonic()
            try:
                self._flush()
            except Exception:
                pass  # a broken source reports itself through its own barrier; ingestion goes on
            self._last_start = start
