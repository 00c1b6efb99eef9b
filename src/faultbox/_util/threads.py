"""Interrupting a Python thread that will not stop by itself, and the main thread on SIGTERM; a
thread that outlives the calls it runs (for forking children that die with their parent); a thread
that runs in its creator's context.

CPython delivers an exception set with PyThreadState_SetAsyncExc at the thread's next bytecode
boundary: spec code stuck in a loop is stopped; a thread blocked inside a C call is stopped when
that call returns. Passing None takes back an exception that has not been delivered yet.
"""

from __future__ import annotations

import contextvars
import ctypes
import functools
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


class ContextThread(threading.Thread):
    """A thread that runs in a copy of the context (contextvars) of the thread that created it.

    A plain thread starts in an empty context: it would not see the running test's host
    (spec/host.py), so spec code on it would find itself outside any test. Every thread started on
    a test's behalf that may run spec code (its body, parallel() branches, concurrent service
    starts) is one of these. The copy is taken at construction, one per thread: a Context cannot
    be entered by two threads at once, and what the thread sets stays its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._context = contextvars.copy_context()

    def run(self) -> None:
        self._context.run(super().run)


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
        # The call runs as if on the caller's thread: in (a copy of) its context, since the
        # serving thread is shared by every caller, whichever test it runs for.
        self._jobs.put((functools.partial(contextvars.copy_context().run, fn), done))
        return done.result()

    def _serve(self) -> None:
        while True:
            fn, done = self._jobs.get()
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed to the caller's thread
                done.set_exception(exc)
