"""Spec code that runs while an event is appended (a monitor, a temporal property's predicate)
holds the trace's lock, on whichever thread appended: body, output pump, event source. A call of
it that runs past the test's deadline must be stopped, or the whole test hangs behind it. A
CallWatch knows the call in progress, and a watchdog asks it to interrupt one that is overdue."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from faultbox._util.threads import raise_in_thread

OVERDUE_GRACE = 1.0  # seconds a call may run past the deadline (or its own start, if later)


class CallWatch:
    def __init__(self, overdue: type[BaseException]) -> None:
        self.overdue = overdue  # what an overdue call gets raised into it
        # The call in progress: (thread ident, start time), or None. Only one thread at a time can
        # be inside a call (the log's lock is held); `_guard` orders the watchdog against it.
        self._call: tuple[int, float] | None = None
        self._interrupted = False
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Around one call (calls may nest: a monitor's query runs another's)."""
        outer = self._call
        # One atomic store: the watchdog sees either no call or this one. (Ending a call needs the
        # guard, so that an interruption never lands after the call is over.)
        self._call = (threading.get_ident(), time.monotonic())
        try:
            yield
        finally:
            try:
                self._end(outer)
            except BaseException:
                # The interruption landed inside the first _end, before it took it back: the
                # second cannot be interrupted (nothing is pending any more), and settles the call.
                self._end(outer)
                raise

    def _end(self, outer: tuple[int, float] | None) -> None:
        with self._guard:
            if self._interrupted and self._call is not None:
                raise_in_thread(self._call[0], None)  # not delivered yet: take it back
                self._interrupted = False
            self._call = outer

    def interrupt_overdue(self, deadline: float) -> bool:
        """Stop the call in progress if it runs past the deadline, given at least a grace period
        of its own; True when it was interrupted now."""
        with self._guard:
            call = self._call
            if call is None or self._interrupted:
                return False
            ident, started = call
            if time.monotonic() < max(deadline, started) + OVERDUE_GRACE:
                return False
            raise_in_thread(ident, self.overdue)
            self._interrupted = True
            return True
