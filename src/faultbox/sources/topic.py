"""`topic` events: what the Kafka layer saw, observed from outside the system under test.

    action "produce"  one per message appended to an observed topic (all non-internal topics when
                      `topics` is None; new topics are discovered as they appear)
    action "consume"  one per message a consumer group of the system under test has consumed, i.e.
                      each message between a group's previous and new *committed* offset
    fields            action, topic, partition, offset, key, value (+ group for consume), and each
                      top-level key of the value when it is a JSON object: strings as they are,
                      numbers as written in the message, booleans "true"/"false", nested values as
                      compact JSON, null -> left out. A JSON key named like one of the fields above
                      is emitted as "value_<key>". A null key or value leaves that field out; bytes
                      that are not UTF-8 are kept with backslash escapes. data = None.

How it observes without interfering (DECISIONS §18, §25): one consumer with manual partition
assignment (no subscribe, so it never joins a group), enable.auto.commit=false, never commits, and a
group.id of its own that therefore never exists on the broker. Group progress is read through the
admin API (ListGroups + OffsetFetch), polled every `poll_interval` and at each barrier, so consume
events appear when the system *commits* (librdkafka's auto-commit runs every 5 s by default).

Limits: a group first seen after start() is assumed to have started reading where this observer
started (the high watermark at start() for topics that existed then, offset 0 for newer ones).
Messages are cached in memory (a test run's worth) to build the consume events.

Tansu quirks seen here: ListOffsets reports the base offset of the last *batch* + 1, so a barrier
waits for the batch that holds the watermark (fetches return whole batches, so that is enough), and
a fetch is held for the full fetch.wait.max.ms even when data arrives: `fetch_wait_ms` bounds the
produce-to-event latency (10 ms -> ~1-5 ms latency for ~4% of a core in the broker).

Where it runs: librdkafka can end its process (an assertion abort was seen while a broker's sends
were delayed), so the consumer and the admin client run in a reader process of their own
(`topic_reader.py`, protocol there); this class is the runner's side of it and never loads
confluent-kafka. The reader streams its events over one ordered socket, so a barrier's answer comes
after the events it covers, and emit() is called here, on a thread of this class, as before. The
reader dies with the runner (PR_SET_PDEATHSIG; it is started from a thread that lives as long as
the process, because the signal follows the *thread* that forked it).

A reader outlives its source when it can: importing confluent-kafka costs it ~0.35 s of CPU, as
much as a small test's app. start() takes a reader from `_readers` (the idle one if there is one,
else a new one) and sends it its config. stop() drops the reader's events from then on and, if the
reader is beyond doubt (it answered "ready" and every barrier in time, reported no failure, and is
alive), sends it "release": the reader closes its clients and forgets this source, answers
"released" (within `_RELEASE_WAIT`), and is given back to `_readers`, which keeps it idle for the
next source (or ends it if one is idle already). Any other reader (one that failed, died, did not
start, did not answer in time, or has a barrier outstanding) is ended as before: its socket closed,
reaped, SIGKILL if it lingers; and a new one is started ahead for the next source.

If a reader dies (a signal, an abort, an exit), the source fails: it emits one `source_error` event
at once (fields `error`, `fatal`="true", so a death after the last step is reported too), and every
later barrier() raises SourceError with the same reason (signal name or exit code, and the reader's
last stderr line). The next source gets another reader.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any

from faultbox._util.frames import FrameReader, send_frame
from faultbox.model.event import SOURCE_ERROR
from faultbox.sources import Emit, SourceError

log = logging.getLogger(__name__)

_META = frozenset({"action", "topic", "partition", "offset", "key", "value", "group"})
_COUNTERS = (
    "produce_events",
    "consume_events",
    "messages",  # messages read from the broker (including those before start())
    "partitions",  # partitions observed
    "partition_resets",  # a partition's offsets went back (the in-memory broker restarted)
    "group_polls",
    "errors",  # broker or admin errors seen (librdkafka reconnects by itself)
    "emit_errors",
    "barriers",
)
_READER_MODULE = "faultbox.sources.topic_reader"
_SPAWN_ALLOWANCE = 20.0  # seconds a reader has to start its interpreter and import its client
_STOP_WAIT = 5.0  # seconds a reader has to exit once its socket is closed, before SIGKILL
_RELEASE_WAIT = 2.0  # seconds a reader has to answer "release" (it takes ~15 ms) before it is ended
_STDERR_LINES = 20


@dataclass
class _Barrier:
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class TopicSource:
    """Observes a Kafka broker's topics and the committed offsets of its consumer groups."""

    def __init__(
        self,
        bootstrap: str,
        service: str,
        emit: Emit,
        *,
        topics: list[str] | None = None,
        poll_interval: float = 0.2,
        fetch_wait_ms: int = 10,
        request_timeout: float = 5.0,
    ) -> None:
        self._bootstrap = bootstrap
        self._service = service
        self._emit = emit
        self._topics = list(topics) if topics is not None else None
        self._poll_interval = poll_interval
        self._fetch_wait_ms = fetch_wait_ms
        self._request_timeout = request_timeout
        # Never committed to, so it never exists on the broker; unique so two observers never meet.
        self._group_id = f"faultbox-observer-{secrets.token_hex(6)}"

        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._pending: dict[int, _Barrier] = {}
        self._next_id = 0
        self._failure: str | None = None
        self._counts = dict.fromkeys(_COUNTERS, 0)  # fixed keys: stats() copies it concurrently
        self._stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self._ready = threading.Event()  # the reader answered its config (or ended, or start gave up)
        self._following = False  # it answered "ready": from now on its end is a failure
        self._start_error: str | None = None
        self._stopping = False  # stop() began: the reader's events are dropped from now on
        self._doubt = False  # a barrier went unanswered in time: the reader is not given back
        self._release_seen = threading.Event()  # the reader answered "release" (or _run() ended)
        self._released = False  # ...with "released", last: it can serve the next source
        self._ended = False  # the reader is gone (or released) and every barrier was answered
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def group_id(self) -> str:
        """The observer's own group id (never joined, never committed)."""
        return self._group_id

    @property
    def reader_pid(self) -> int | None:
        """The pid of the reader process this source was given (also after stop())."""
        return self._proc.pid if self._proc is not None else None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader, which connects, reads what the topics already hold (no events for it)
        and records each group's committed offsets as the baseline; return once it follows."""
        if self._proc is not None:
            raise RuntimeError("TopicSource already started")
        try:
            reader = _readers.take()
        except OSError as exc:
            raise SourceError(f"topic source for {self._service!r} could not start its reader: {exc}") from exc
        self._proc, self._sock = reader.proc, reader.sock
        self._thread = threading.Thread(target=self._run, name=f"faultbox-topic-{self._service}", daemon=True)
        self._thread.start()
        config = {
            "op": "config",
            "bootstrap": self._bootstrap,
            "service": self._service,
            "topics": self._topics,
            "poll_interval": self._poll_interval,
            "fetch_wait_ms": self._fetch_wait_ms,
            "request_timeout": self._request_timeout,
            "group_id": self._group_id,
        }
        try:
            self._write(config)
        except OSError:
            pass  # the reader is gone already: _run() says why
        if not self._ready.wait(self._request_timeout + _SPAWN_ALLOWANCE):
            self._start_error = (
                f"its reader process did not report within {self._request_timeout + _SPAWN_ALLOWANCE:g}s"
            )
        if self._start_error is not None:
            self.stop()
            raise SourceError(
                f"topic source for {self._service!r} could not start on {self._bootstrap}: {self._start_error}"
            )

    def stop(self) -> None:
        """Stop following; no event reaches emit once this returns. A reader beyond doubt is
        released and given back for the next source; any other has its socket closed and is reaped
        (SIGKILL if it lingers). Safe to call twice; never raises. Commits nothing."""
        proc, sock, thread = self._proc, self._sock, self._thread
        if proc is None or sock is None or thread is None:
            return
        with self._lock:  # the lock barrier() takes: no barrier starts after this
            if self._stopping:
                return
            self._stopping = True
            reusable = (
                self._following
                and self._start_error is None
                and self._failure is None
                and not self._doubt
                and not self._ended
                and not self._pending
                and thread is not threading.current_thread()  # (stop() from emit: _run() cannot answer)
            )
        if reusable and self._give_back(proc, sock, thread):
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            proc.wait(timeout=_STOP_WAIT)
        except subprocess.TimeoutExpired:
            log.warning("topic reader for %s (pid %d) did not exit: killing it", self._service, proc.pid)
            proc.kill()
            proc.wait()
        if thread is not threading.current_thread():
            thread.join(timeout=10)
            if thread.is_alive():
                log.warning("topic source thread for %s did not stop within 10 s", self._service)
            elif proc.stderr is not None:
                proc.stderr.close()  # _run() leaves it open when the reader answered "released"
        sock.close()
        _readers.start_ahead()  # this reader will not come back: the next source need not wait

    def _give_back(self, proc: subprocess.Popen[bytes], sock: socket.socket, thread: threading.Thread) -> bool:
        """Release the reader and give it back to `_readers`; False (nothing given) if it is gone,
        does not answer "released" in time, or reports anything amiss meanwhile."""
        if proc.poll() is not None:
            return False
        try:
            self._write({"op": "release"})
        except OSError:
            return False
        if not self._release_seen.wait(_RELEASE_WAIT):
            log.warning(
                "topic reader for %s (pid %d) did not answer release within %gs: ending it",
                self._service,
                proc.pid,
                _RELEASE_WAIT,
            )
            return False
        if not self._released:
            return False
        thread.join(timeout=_STOP_WAIT)  # it returns right after "released", reading nothing more
        with self._lock:
            healthy = self._released and self._failure is None
        if not healthy or thread.is_alive() or proc.poll() is not None or not _quiet(sock):
            return False
        _readers.give_back(_Reader(proc, sock))
        return True

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def barrier(self, timeout: float) -> None:
        """Return once every message appended before this call has its produce event, and the
        groups' committed offsets have been re-read once (their consume events emitted)."""
        request = _Barrier()
        with self._lock:
            if self._failure is not None:
                raise SourceError(self._failure)
            if self._proc is None or self._stopping or self._ended:
                raise SourceError(f"topic source for {self._service!r} is not running")
            self._counts["barriers"] += 1
            self._next_id += 1
            number = self._next_id
            self._pending[number] = request
        try:
            try:
                self._write({"op": "barrier", "id": number, "timeout": timeout})
            except OSError:
                # The reader is gone: _run() is about to say why, and release this request.
                request.done.wait(_STOP_WAIT)
                self._raise_if_failed()
                raise SourceError(f"topic source for {self._service!r} is not running") from None
            # The reader answers even when it runs out of time; the grace covers one consume tick.
            if not request.done.wait(timeout + 1.0):
                self._doubt = True
                self._raise_if_failed()
                raise SourceError(f"topic barrier for {self._service!r} timed out after {timeout:g}s (reader busy)")
        finally:
            with self._lock:
                self._pending.pop(number, None)
        if request.error is not None:
            raise SourceError(request.error)
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        with self._lock:
            if self._failure is not None:
                raise SourceError(self._failure)

    def _write(self, message: dict[str, Any]) -> None:
        assert self._sock is not None
        with self._send_lock:
            send_frame(self._sock, message)

    # -- the reader's side ----------------------------------------------------------------------

    def _run(self) -> None:
        """Read the reader's frames and its stderr until both end; then reap it and, unless it was
        told to stop, report how it ended. Or, once stop() released it, until its "released": then
        return at once, leaving the reader, its socket and its stderr as they are, for the next
        source."""
        try:
            self._follow()
        finally:
            self._release_seen.set()

    def _follow(self) -> None:
        assert self._proc is not None and self._sock is not None and self._proc.stderr is not None
        proc, sock, stderr = self._proc, self._sock, self._proc.stderr
        frames = FrameReader()
        partial = b""
        child_failure: str | None = None
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_READ)
                selector.register(stderr, selectors.EVENT_READ)
                while selector.get_map() and not self._released:
                    for key, _ in selector.select():
                        if key.fileobj is sock:
                            try:
                                data = sock.recv(1 << 20)
                            except OSError:
                                data = b""
                            if not data:
                                selector.unregister(sock)
                            batch = frames.feed(data)
                            for n, frame in enumerate(batch):
                                if frame.get("op") == "released" and self._stopping:
                                    # Its last word for this source: anything after it would be
                                    # read by the next source's thread, so nothing may follow.
                                    self._released = n == len(batch) - 1 and not frames.buffered
                                    self._release_seen.set()
                                    continue
                                child_failure = self._on_frame(frame) or child_failure
                        else:
                            chunk = os.read(stderr.fileno(), 1 << 16)
                            if not chunk:
                                selector.unregister(stderr)
                                self._note_stderr(partial)
                                continue
                            *lines, partial = (partial + chunk).split(b"\n")
                            for line in lines:
                                self._note_stderr(line)
        except BaseException as exc:  # a bug here: never leave the reader running unreported
            log.exception("topic source thread crashed")
            self._released = False
            self._fail(f"topic source for {self._service!r}: its reading thread crashed: {exc!r}")
            if not self._stopping:
                proc.kill()
        if self._released:  # stop() gives it back
            self._release(f"topic source for {self._service!r} stopped")
            return
        try:
            code = proc.wait(timeout=_STOP_WAIT)
        except subprocess.TimeoutExpired:  # it closed its socket and stderr, yet lives on
            proc.kill()
            code = proc.wait()
        stderr.close()
        if self._stopping:
            self._release(f"topic source for {self._service!r} stopped")
            return
        how = _exit_text(code)
        last = f" (last stderr line: {self._stderr[-1]})" if self._stderr else ""
        if not self._following:
            self._start_error = self._start_error or f"its reader process (pid {proc.pid}) {how}{last}"
            self._ready.set()
            return
        reason = f"its reader process (pid {proc.pid}) {how}{last}"
        message = f"{child_failure}; {reason}" if child_failure else f"topic source for {self._service!r}: {reason}"
        log.error("%s", message)
        try:  # before any barrier raises it: the trace says first that the source ended
            self._emit(SOURCE_ERROR, self._service, {"error": f"SourceError: {message}", "fatal": "true"}, None)
        except BaseException:
            log.exception("could not record the topic reader's end")
        self._release(message, failure=message)  # the death is the news, whatever failed before it

    def _note_stderr(self, line: bytes) -> None:
        text = line.decode(errors="backslashreplace").rstrip()
        if text.strip():
            self._stderr.append(text)

    def _on_frame(self, message: dict[str, Any]) -> str | None:
        op = message.get("op")
        if op == "events":
            if self._stopping:
                return None  # the test is over: its trace takes nothing more
            for fields in message["events"]:
                self._deliver(fields)
        elif op == "done":
            self._merge(message["stats"])
            with self._lock:
                request = self._pending.get(int(message["id"]))
            if request is not None:
                request.error = message.get("error")
                request.done.set()
        elif op == "stats":
            self._merge(message["stats"])
        elif op == "ready":
            self._following = True
            self._ready.set()
        elif op == "start_failed":
            self._start_error = str(message.get("error"))
            self._ready.set()
        elif op == "failed":
            text = str(message.get("error"))
            self._fail(text)
            return text
        return None

    def _deliver(self, fields: dict[str, str]) -> None:
        counter = "consume_events" if fields.get("action") == "consume" else "produce_events"
        try:
            self._emit("topic", self._service, fields, None)
            self._counts[counter] += 1
        except BaseException as exc:  # the callback must not stop the reading; surface it
            self._counts["emit_errors"] += 1
            self._fail(f"topic source for {self._service!r}: the emit callback raised {exc!r}")

    def _merge(self, counts: dict[str, int]) -> None:
        with self._lock:
            for name, value in counts.items():
                if name in self._counts:
                    self._counts[name] = int(value)

    def _release(self, error: str, *, failure: str | None = None) -> None:
        """Answer every barrier still waiting: the reader will not. Under the lock barrier() takes
        to check for a failure and wait, so none starts waiting after this."""
        with self._lock:
            if failure is not None:
                self._failure = failure
            self._ended = True
            pending = list(self._pending.values())
        for request in pending:
            request.error = request.error or error
            request.done.set()

    def _fail(self, message: str) -> None:
        log.error("%s", message)
        with self._lock:
            if self._failure is None:
                self._failure = message


def _quiet(sock: socket.socket) -> bool:
    """Nothing waits to be read (the reader sends nothing between "released" and its next config),
    and the reader has not closed its end."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # a byte, or b"" at the end
    except BlockingIOError:
        return True
    except OSError:
        pass
    return False


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class _Reader:
    proc: subprocess.Popen[bytes]
    sock: socket.socket  # the runner's end


class _Readers:
    """Hands reader processes to sources and keeps at most one idle, waiting for its config: the
    spare. It dies with this process and is killed and reaped at exit.

    A source that stops with a healthy reader gives it back (give_back), and it becomes the spare
    (or is ended, if there is one already): a run's sources share one reader, and its ~0.35 s of
    CPU importing the client is paid once. A source that must end its reader (it failed or died)
    has the next one started ahead (start_ahead), since a start is mostly that import (0.2-0.6 s on
    a busy machine, against ~40 ms to connect) and the next source need not wait for it. take()
    starts none ahead: the reader it hands out is expected back (starting one would only have one
    of the two ended when it comes back). So only the first source, and one taken while another
    source holds the reader, wait for a reader to start.

    Every reader is started from one daemon thread that lives as long as the process: a child's
    PR_SET_PDEATHSIG fires when the *thread* that forked it ends, and a source may be started from
    a thread that ends before it does."""

    def __init__(self, command: list[str]) -> None:
        self.command = command  # + the socket's fd and this process's pid
        self._lock = threading.Lock()
        self._thread_lock = threading.Lock()
        self._jobs: SimpleQueue[Future[_Reader]] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._spare: Future[_Reader] | None = None
        self._closed = False

    def take(self) -> _Reader:
        """A reader waiting for its config: the spare if it is alive, else a new one (raises
        OSError if none can be started)."""
        with self._lock:
            spare, self._spare = self._spare, None
        reader = _result(spare) if spare is not None else None
        if reader is not None and reader.proc.poll() is not None:
            _discard(reader)
            reader = None
        if reader is None:
            reader = self._submit().result()
        return reader

    def give_back(self, reader: _Reader) -> None:
        """A reader its source released, alive and waiting for its next config: the spare if there
        is none (and starts none ahead), else it is killed and reaped."""
        idle: Future[_Reader] = Future()
        idle.set_result(reader)
        with self._lock:
            kept = self._spare is None and not self._closed
            if kept:
                self._spare = idle
        if not kept:
            _discard(reader)

    def start_ahead(self) -> None:
        """Start a reader for the next source, unless one is idle (or being started) already."""
        with self._lock:
            if self._spare is None and not self._closed:
                self._spare = self._submit()

    def spare_pid(self) -> int | None:
        """The idle reader's pid, if one is ready."""
        with self._lock:
            spare = self._spare
        reader = _result(spare, 0) if spare is not None and spare.done() else None
        return reader.proc.pid if reader is not None else None

    def close(self) -> None:
        """Kill and reap the idle reader; keep none from now on."""
        with self._lock:
            spare, self._spare = self._spare, None
            self._closed = True
        reader = _result(spare, 5.0) if spare is not None else None
        if reader is not None:
            _discard(reader)

    def _submit(self) -> Future[_Reader]:
        done: Future[_Reader] = Future()
        with self._thread_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="faultbox-topic-spawner", daemon=True)
                self._thread.start()
            self._jobs.put(done)
        return done

    def _serve(self) -> None:
        while True:
            done = self._jobs.get()
            try:
                done.set_result(self._start())
            except BaseException as exc:
                done.set_exception(exc)

    def _start(self) -> _Reader:
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [*self.command, str(theirs.fileno()), str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return _Reader(proc, ours)


def _result(future: Future[_Reader], timeout: float | None = None) -> _Reader | None:
    try:
        return future.result(timeout)
    except Exception:  # it could not be started (or not in time): the caller starts another
        return None


def _discard(reader: _Reader) -> None:
    reader.sock.close()
    if reader.proc.poll() is None:
        reader.proc.kill()
    reader.proc.wait()
    if reader.proc.stderr is not None:
        reader.proc.stderr.close()


_readers = _Readers([sys.executable, "-m", _READER_MODULE])
atexit.register(lambda: _readers.close())


def message_fields(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> dict[str, str]:
    """The string fields of one message (without `action`); see the module docstring."""
    fields = {"topic": topic, "partition": str(partition), "offset": str(offset)}
    if key is not None:
        fields["key"] = _text(key)
    if value is not None:
        text = _text(value)
        fields["value"] = text
        for name, item in _json_object(text).items():
            rendered = _field_text(item)
            if rendered is not None:
                fields[f"value_{name}" if name in _META else name] = rendered
    return fields


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


def _json_object(text: str) -> dict[str, Any]:
    if not text.startswith("{"):
        return {}
    try:
        # Numbers parsed as text keep their spelling ("1.10", "1e6").
        obj = json.loads(text, parse_float=_Number, parse_int=_Number)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


class _Number(str):
    """A JSON number kept as the text it was written with."""


def _field_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return str(value)
    return json.dumps(_plain(value), separators=(",", ":"), sort_keys=True)


def _plain(value: Any) -> Any:
    """Undo the text-preserving number parse inside nested values, for json.dumps."""
    if isinstance(value, _Number):
        return json.loads(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    return remaining
