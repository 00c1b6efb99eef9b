"""Interrupting a Python thread that will not stop by itself, and the main thread on SIGTERM; a
thread that outlives the calls it runs (for forking children that die with their parent).

CPython delivers an exception set with PyThreadState_SetAsyncExc at the thread's next bytecode
boundary: spec code stuck in a loop is stopped; a thread blocked inside a C call is stopped when
that call returns. Passing None takes back an exception that has not been delivered yet.
"""

from __future__ import annotations

import ctypes
import queue
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")


def raise_in_thread(ident: int, exc_type: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(exc_type) if exc_type is not None else None
    )


def sigterm_as_interrupt() -> None:
    """SIGTERM stops this process as Ctrl-C does: a KeyboardInterrupt in the main thread, so that
    every cleanup on the way out runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


class LastingThread:
    """Runs calls on one daemon thread that lives as long as the process.

    A child's PR_SET_PDEATHSIG fires when the *thread* that forked it ends, not the process: a
    service forked from a thread that starts it and then returns would be killed at once. Forking
    from here ties the child to the process instead, whichever thread asked."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def call(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread:
            return fn()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._thread.start()
        done: Future[T] = Future()
        self._jobs.put((fn, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            fn, done = self._jobs.get()
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed to the caller's thread
                done.set_exception(exc)
