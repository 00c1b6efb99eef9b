"""Interrupting a Python thread that will not stop by itself, and the main thread on SIGTERM.

CPython delivers an exception set with PyThreadState_SetAsyncExc at the thread's next bytecode
boundary: spec code stuck in a loop is stopped; a thread blocked inside a C call is stopped when
that call returns. Passing None takes back an exception that has not been delivered yet.
"""

from __future__ import annotations

import ctypes
import signal
from types import FrameType


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
