"""One thread that reads every service's stdout and stderr, line by line.

Lines are handed to per-stream callbacks (which turn them into trace events). `drain()` is the stdio
half of the trace barrier: it returns after the pump has read everything that was in the pipes when
it was called, so a log line a service wrote before answering a step is in the trace before the step
returns. A line longer than MAX_LINE becomes several events of at most MAX_LINE bytes each; of a
line longer than LINE_CAP, only its first LINE_CAP bytes are kept (the last piece ends with
CUT_MARK) and the rest, up to its newline, is dropped, so output without newlines costs bounded
memory. A stream is read at most _BURST bytes at a time (more than a pipe can hold, so a drain still
reads everything that was in the pipe), and what was read is delivered before reading more: a
service printing faster than its lines are handled waits on its pipe, instead of the runner holding
its output.

Lines read in one sweep are delivered together, after `before_lines(received)` has run: the host
uses it to flush the syscall events that causally precede them (runner/causal.py).
"""

from __future__ import annotations

import os
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

LineHandler = Callable[[str], None]
MAX_LINE = 64 * 1024  # a longer line becomes several events of at most this many bytes
LINE_CAP = 16 * MAX_LINE  # of a longer line, only this much is kept: the rest up to its newline is dropped
CUT_MARK = b" [faultbox: line cut at 1 MiB]"
_READ = 1 << 16
_BURST = 1 << 20  # bytes read from one stream before delivering (>= the largest pipe, /proc/sys/fs/pipe-max-size)


@dataclass(eq=False)
class _Stream:
    fd: int
    on_line: LineHandler
    on_eof: Callable[[], None] | None
    buffer: bytearray = field(default_factory=bytearray)
    watch_only: bool = False
    kept: int = 0  # bytes of the current line delivered already (as pieces)
    dropping: bool = False  # past LINE_CAP: drop up to the next newline


class IoPump:
    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._adds: list[_Stream] = []
        self._drains: list[threading.Event] = []
        self._stopping = False
        self._pending: list[tuple[_Stream, bytes]] = []
        self.before_lines: Callable[[float], None] | None = None
        # A plain thread, shared by every test of the run: the callbacks it makes reach a test's
        # trace, whose log makes the test's host current around its monitors (runner/host.py).
        self._thread = threading.Thread(target=self._run, name="faultbox-io", daemon=True)
        self._thread.start()

    def add(self, pipe: IO[bytes], on_line: LineHandler, on_eof: Callable[[], None] | None = None) -> None:
        fd = pipe.fileno()
        os.set_blocking(fd, False)
        with self._lock:
            self._adds.append(_Stream(fd, on_line, on_eof))
        self._wake()

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        """Call `callback` once when `fd` becomes readable (a pidfd: the process exited).
        The pump owns `fd` from now on and closes it after the callback."""
        with self._lock:
            self._adds.append(_Stream(fd, lambda _line: None, callback, watch_only=True))
        self._wake()

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until everything currently in the pipes has been read and handled."""
        if threading.current_thread() is self._thread:
            return True
        done = threading.Event()
        with self._lock:
            self._drains.append(done)
        self._wake()
        return done.wait(timeout)

    def close(self) -> None:
        self._stopping = True
        self._wake()
        self._thread.join(timeout=5.0)
        self._sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass

    def _run(self) -> None:
        while not self._stopping:
            for key, _ in self._sel.select():
                if key.data is None:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                else:
                    self._read(key.data)
            with self._lock:
                adds, self._adds = self._adds, []
                drains, self._drains = self._drains, []
            for stream in adds:
                self._sel.register(stream.fd, selectors.EVENT_READ, stream)
                if not stream.watch_only:
                    self._read(stream)
            if drains:
                for key in list(self._sel.get_map().values()):
                    if key.data is not None and not key.data.watch_only:
                        self._read(key.data)
            self._deliver_pending()
            for done in drains:
                done.set()

    def _read(self, stream: _Stream) -> None:
        if stream.watch_only:
            self._finish(stream)
            return
        budget = _BURST
        while budget > 0:
            try:
                chunk = os.read(stream.fd, _READ)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._finish(stream)
                return
            budget -= len(chunk)
            self._split(stream, chunk)

    def _split(self, stream: _Stream, chunk: bytes) -> None:
        if stream.dropping:
            end = chunk.find(b"\n")
            if end < 0:
                return
            stream.dropping = False
            chunk = chunk[end + 1 :]
        stream.buffer += chunk
        if b"\n" in chunk:
            # Only the first line can be longer than a read (_READ <= MAX_LINE): it began earlier.
            first, *lines, rest = bytes(stream.buffer).split(b"\n")
            if stream.kept or len(first) > MAX_LINE:
                self._cut(stream, first, ended=True)
            else:
                self._pending.append((stream, first))
            stream.kept = 0
            self._pending.extend((stream, line) for line in lines)
            stream.buffer = bytearray(rest)
        if len(stream.buffer) > MAX_LINE:  # output without newlines must not grow without bound
            stream.buffer = bytearray(self._cut(stream, bytes(stream.buffer), ended=False))

    def _cut(self, stream: _Stream, line: bytes, ended: bool) -> bytes:
        """Queue pieces of MAX_LINE bytes of a long line (all of it once `ended`, else while more
        than MAX_LINE is left); past LINE_CAP, mark the last piece and drop the rest. Returns what
        is left of an open line."""
        at = 0
        while len(line) - at > MAX_LINE or (ended and at < len(line)):
            piece = line[at : at + MAX_LINE]
            at += len(piece)
            stream.kept += len(piece)
            if stream.kept >= LINE_CAP and at < len(line):  # and more of the line follows
                self._pending.append((stream, piece + CUT_MARK))
                stream.kept = 0
                stream.dropping = not ended
                return b""
            self._pending.append((stream, piece))
        return line[at:]

    def _deliver_pending(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        hook = self.before_lines
        if hook is not None:
            hook(time.monotonic())
        for stream, line in pending:
            self._deliver(stream, line)

    def _finish(self, stream: _Stream) -> None:
        try:
            self._sel.unregister(stream.fd)
        except (KeyError, ValueError):
            pass
        if stream.buffer:
            self._pending.append((stream, bytes(stream.buffer)))
            stream.buffer.clear()
        self._deliver_pending()
        if stream.on_eof is not None:
            try:
                stream.on_eof()
            except Exception:
                pass
        if stream.watch_only:
            os.close(stream.fd)

    @staticmethod
    def _deliver(stream: _Stream, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if line:
            try:
                stream.on_line(line)
            except Exception:  # a handler bug must not stop every other stream
                pass
