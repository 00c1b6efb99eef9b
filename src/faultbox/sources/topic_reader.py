"""The topic source's reader process: everything that runs librdkafka (confluent-kafka).

librdkafka can end its process (an assertion abort was seen while a broker's sends were delayed), so
it never runs in the runner: `topic.TopicSource` starts this module as a child process,

    python -m faultbox.sources.topic_reader FD PARENT_PID

and the two talk over one stream socket (FD) of length-prefixed JSON frames (`_util/frames.py`).
A reader serves one source after another (importing confluent-kafka costs it ~0.35 s of CPU, so a
healthy one is kept for the next test); for each, in order:

    parent -> reader   {"op": "config", ...TopicSource's settings}   first
                       {"op": "barrier", "id": n, "timeout": seconds}
                       {"op": "release"}                             this source is done with it
                       {"op": "stop"}                                or just closing the socket
    reader -> parent   {"op": "ready"} | {"op": "start_failed", "error": text}
                       {"op": "events", "events": [fields, ...]}     each with its "action"
                       {"op": "done", "id": n, "error": text|null, "stats": {...}}
                       {"op": "stats", "stats": {...}}
                       {"op": "failed", "error": text}               unrecoverable, the reader goes on
                       {"op": "released"}                            the answer to "release", last

A barrier's "done" follows the events it covers on the same socket, so when the parent has read it,
it has emitted them. On "release" the reader answers the barriers sent before it, closes its
consumer, drops its admin client and everything it knew of that source (caches, group baselines,
counts), sends "released" and then nothing until the next "config", which it serves as a freshly
started reader would. After "start_failed" it exits (a reader that could not start is not kept).
The reader dies with its parent (PR_SET_PDEATHSIG), ignores SIGINT (Ctrl-C is the runner's) and
exits at once on "stop" or when the socket closes, whatever it is doing: it holds nothing that
needs a clean close (it never joins a group, never commits). What it writes on stderr is the
parent's to report.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

# OffsetSpec is exported at runtime but not declared in the stubs.
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from faultbox._util.frames import FrameReader, send_frame
from faultbox._util.rdkafka import FAST_CONNECT
from faultbox.sources.topic import message_fields

log = logging.getLogger(__name__)

# librdkafka logs each refused connection; route it to Python logging, silent unless configured.
_rdkafka_log = logging.getLogger("faultbox.sources.topic.rdkafka")
_rdkafka_log.addHandler(logging.NullHandler())
_rdkafka_log.propagate = False

# Both clients reconnect within a quarter second of a broker that restarted (librdkafka's default
# backoff grows to 10 s).
_CONNECT = {**FAST_CONNECT, "reconnect.backoff.max.ms": 250}
_PR_SET_PDEATHSIG = 1
_TICK = 0.003  # poll() timeout: how fast a barrier request is noticed (~0.5% CPU idle)
#: The counters kept here; the parent keeps the others (the events it emitted, barriers).
COUNTERS = (
    "messages",  # messages read from the broker (including those before start())
    "partitions",  # partitions observed
    "partition_resets",  # a partition's offsets went back (the in-memory broker restarted)
    "group_polls",
    "errors",  # broker or admin errors seen (librdkafka reconnects by itself)
)

TP = tuple[str, int]


@dataclass
class _Barrier:
    id: int
    deadline: float


class _Release:
    """The parent's "release": the current source is done with this reader."""


class _Channel:
    """The socket to the parent, for the reader's whole life. A thread of its own reads it (so a
    "stop" or the socket's end is noticed at once, whatever the main thread is doing) and queues,
    in the order they came, the configs and each source's barriers and release."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()
        self._ready = threading.Condition()
        self._configs: deque[dict[str, Any]] = deque()
        self._requests: deque[_Barrier | _Release] = deque()

    def send(self, message: dict[str, Any]) -> None:
        with self._send_lock:
            send_frame(self._sock, message)

    def next_config(self) -> dict[str, Any]:
        """Wait for the next source's config."""
        with self._ready:
            while not self._configs:
                self._ready.wait()
            return self._configs.popleft()

    def next_request(self) -> _Barrier | _Release | None:
        with self._ready:
            return self._requests.popleft() if self._requests else None

    def listen(self) -> None:
        """Read the parent's messages (a thread of its own); exit the process when it is gone."""
        reader = FrameReader()
        try:
            while not reader.closed:
                for message in reader.feed(self._sock.recv(1 << 16)):
                    op = message.get("op")
                    if op == "stop":
                        os._exit(0)
                    with self._ready:
                        if op == "config":
                            self._requests.clear()  # of no source (the parent sends none before)
                            self._configs.append(message)
                            self._ready.notify()
                        elif op == "barrier":
                            deadline = time.monotonic() + float(message["timeout"])
                            self._requests.append(_Barrier(int(message["id"]), deadline))
                        elif op == "release":
                            self._requests.append(_Release())
        except OSError:
            pass
        os._exit(0)  # the parent closed the socket (stop) or died: nothing here to keep


class Reader:
    """The observer itself (see topic.py), for one source: one consumer with manual assignment,
    never committing, and the admin API for the groups' committed offsets. Runs on this process's
    main thread; a new one (with nothing of the last) for each source the process serves."""

    def __init__(self, channel: _Channel, config: dict[str, Any]) -> None:
        self._channel = channel
        self._bootstrap: str = config["bootstrap"]
        self._service: str = config["service"]
        topics = config.get("topics")
        self._topics = frozenset(topics) if topics is not None else None
        self._poll_interval = float(config["poll_interval"])
        self._fetch_wait_ms = int(config["fetch_wait_ms"])
        self._request_timeout = float(config["request_timeout"])
        self._group_id: str = config["group_id"]

        self._outbox: list[dict[str, str]] = []
        self._failed = False
        self._last_error: str | None = None
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._sent_counts: dict[str, int] = {}

        self._admin: AdminClient | None = None
        self._consumer: Consumer | None = None
        self._assigned: set[TP] = set()
        self._next: dict[TP, int] = {}  # next offset expected per partition
        self._produce_from: dict[TP, int] = {}  # offsets below it existed before start()
        self._cache: dict[TP, dict[int, dict[str, str]]] = {}
        self._committed: dict[tuple[str, TP], int] = {}  # consume events emitted up to here
        self._targets: dict[tuple[str, TP], int] = {}  # committed offsets ahead of what we read

    # -- the conversation with the parent -----------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        self._channel.send(message)

    def start(self) -> None:
        """Connect, read what the topics already hold (no events for it), record each group's
        committed offsets as the baseline."""
        self._admin = AdminClient(
            {"bootstrap.servers": self._bootstrap, "client.id": "faultbox-observer", **_CONNECT},
            logger=_rdkafka_log,
        )
        self._consumer = Consumer(
            {
                "bootstrap.servers": self._bootstrap,
                "client.id": "faultbox-observer",
                "group.id": self._group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_uncommitted",  # every appended message, as the broker has it
                "fetch.wait.max.ms": self._fetch_wait_ms,
                **_CONNECT,
                "error_cb": self._on_client_error,
            },
            logger=_rdkafka_log,
        )
        deadline = time.monotonic() + self._request_timeout
        self._discover(deadline)
        self._catch_up(self._high_watermarks(deadline), deadline, emit=False)
        for tp in self._assigned:
            self._produce_from[tp] = self._position(tp)
        self._poll_groups(deadline, baseline=True)

    def run(self) -> None:
        """Follow until the parent releases this reader (the barriers sent before are answered)."""
        assert self._consumer is not None
        next_poll = 0.0
        while True:
            request = self._channel.next_request()
            if isinstance(request, _Release):
                return
            if request is not None:
                self._serve(request)
                continue
            now = time.monotonic()
            if now >= next_poll:
                # Failures here are noted and retried at the next poll; a barrier reports them.
                deadline = now + min(self._request_timeout, 1.0)
                try:
                    self._discover(deadline)
                    self._poll_groups(deadline)
                except (KafkaException, TimeoutError) as exc:
                    self._note_error(exc)
                next_poll = time.monotonic() + self._poll_interval
                self._flush()
                self._send_stats()
            self._consume(_TICK)
            self._flush()

    def close(self) -> None:
        """Close the consumer (it never joined a group: nothing to leave, nothing to commit) and
        drop the admin client; librdkafka's threads for both end here."""
        consumer = self._consumer
        self._consumer = self._admin = None  # the admin client is destroyed with its last reference
        if consumer is not None:
            consumer.close()

    def _serve(self, request: _Barrier) -> None:
        error: str | None = None
        try:
            self._discover(request.deadline)
            self._catch_up(self._high_watermarks(request.deadline), request.deadline, emit=True)
            self._poll_groups(request.deadline)
        except (KafkaException, TimeoutError) as exc:
            last = f" (last broker error: {self._last_error})" if self._last_error else ""
            error = f"topic barrier for {self._service!r} failed: {str(exc) or type(exc).__name__}{last}"
        self._flush()
        self._sent_counts = dict(self._counts)
        self.send({"op": "done", "id": request.id, "error": error, "stats": self._sent_counts})

    def _flush(self) -> None:
        if self._outbox:
            events, self._outbox = self._outbox, []
            self.send({"op": "events", "events": events})

    def _send_stats(self) -> None:
        if self._counts != self._sent_counts:
            self._sent_counts = dict(self._counts)
            self.send({"op": "stats", "stats": self._sent_counts})

    # -- reading --------------------------------------------------------------------------------

    def _catch_up(self, watermarks: dict[TP, int], deadline: float, *, emit: bool) -> None:
        while True:
            behind = {tp: hw for tp, hw in watermarks.items() if self._position(tp) < hw}
            if not behind:
                return
            if time.monotonic() >= deadline:
                lag = ", ".join(f"{t}[{p}] at {self._position((t, p))} of {hw}" for (t, p), hw in behind.items())
                raise TimeoutError(f"observer still behind the high watermark: {lag}")
            self._consume(min(_TICK, max(deadline - time.monotonic(), 0.001)), emit=emit)

    def _consume(self, timeout: float, *, emit: bool = True) -> None:
        assert self._consumer is not None
        # poll() returns as soon as one message is there; consume() with a timeout would wait out
        # the whole timeout for a full batch. Then take what else has already arrived.
        first = self._consumer.poll(timeout)
        if first is None:
            return
        messages = [first, *self._consumer.consume(num_messages=1000, timeout=0)]
        touched: set[TP] = set()
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    self._note_error(KafkaException(error))
                continue
            touched.add(self._on_message(message, emit))
        if touched and self._targets:
            for key in [k for k in self._targets if k[1] in touched]:
                self._emit_consumed(key)

    def _on_message(self, message: Message, emit: bool) -> TP:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        tp = (topic, partition)
        self._counts["messages"] += 1
        if offset < self._next.get(tp, 0):
            # Offsets went back: the (in-memory) broker restarted and the topic began again.
            self._counts["partition_resets"] += 1
            self._cache[tp] = {}
            self._produce_from[tp] = 0
            for key in [k for k in self._committed if k[1] == tp]:
                del self._committed[key]
        fields = message_fields(topic, partition, offset, message.key(), message.value())
        self._cache.setdefault(tp, {})[offset] = fields
        self._next[tp] = offset + 1
        if emit and offset >= self._produce_from.get(tp, 0):
            self._outbox.append({"action": "produce", **fields})
        return tp

    def _discover(self, deadline: float) -> None:
        """Assign partitions of topics that appeared (manual assignment: no group join)."""
        assert self._admin is not None and self._consumer is not None
        metadata = self._admin.list_topics(timeout=_remaining(deadline))
        new: list[TopicPartition] = []
        for name, topic in metadata.topics.items():
            if name.startswith("__") or (self._topics is not None and name not in self._topics):
                continue
            if topic.error is not None and topic.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue
            for partition in topic.partitions:
                tp = (name, partition)
                if tp not in self._assigned:
                    self._assigned.add(tp)
                    self._produce_from.setdefault(tp, 0)
                    new.append(TopicPartition(name, partition, OFFSET_BEGINNING))
        if new:
            # The consumer's own metadata first: a partition assigned before it knows the leader
            # waits for librdkafka's retry timer (~500 ms) before its first offset lookup, which
            # was every other start of this source.
            self._consumer.list_topics(timeout=_remaining(deadline))
            self._consumer.incremental_assign(new)
            self._counts["partitions"] = len(self._assigned)

    def _high_watermarks(self, deadline: float) -> dict[TP, int]:
        assert self._admin is not None
        if not self._assigned:
            return {}
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        request = {TopicPartition(t, p): latest for t, p in self._assigned}
        futures = self._admin.list_offsets(request, request_timeout=_remaining(deadline))
        out: dict[TP, int] = {}
        for tp, future in futures.items():
            out[(tp.topic, tp.partition)] = future.result(timeout=_remaining(deadline)).offset
        return out

    def _position(self, tp: TP) -> int:
        """Next offset to read: past the last message seen, or librdkafka's fetch position (which
        also steps over control records)."""
        assert self._consumer is not None
        fetched = self._consumer.position([TopicPartition(tp[0], tp[1])])[0].offset
        return max(self._next.get(tp, 0), fetched)

    def _poll_groups(self, deadline: float, *, baseline: bool = False) -> None:
        """Read every group's committed offsets; emit consume events for what each newly covers."""
        assert self._admin is not None
        listing = self._admin.list_consumer_groups(request_timeout=_remaining(deadline))
        groups = [
            g.group_id for g in listing.result(timeout=_remaining(deadline)).valid if g.group_id != self._group_id
        ]
        futures = [
            self._admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=_remaining(deadline)
            )
            for group in groups
        ]
        self._counts["group_polls"] += 1
        failed: list[str] = []
        for by_group in futures:
            for group, future in by_group.items():
                try:
                    result = future.result(timeout=_remaining(deadline))
                except KafkaException as exc:  # read the other groups, then report this one
                    failed.append(f"{group}: {exc}")
                    continue
                for tp in result.topic_partitions or ():
                    if tp.offset < 0 or tp.error is not None:
                        continue  # no committed offset for this partition
                    if self._topics is not None and tp.topic not in self._topics:
                        continue
                    key = (group, (tp.topic, tp.partition))
                    if baseline:
                        self._committed[key] = tp.offset
                    else:
                        self._on_commit(key, tp.offset)
        if failed:
            raise KafkaException(f"could not read committed offsets of {'; '.join(failed)}")

    def _on_commit(self, key: tuple[str, TP], offset: int) -> None:
        done = self._committed.get(key, self._produce_from.get(key[1], 0))
        if offset < done:  # the group rewound: the messages will be consumed (and reported) again
            self._committed[key] = offset
            self._targets.pop(key, None)
            return
        if offset > done:
            self._targets[key] = offset
            self._emit_consumed(key)

    def _emit_consumed(self, key: tuple[str, TP]) -> None:
        group, tp = key
        target = self._targets[key]
        done = self._committed.get(key, self._produce_from.get(tp, 0))
        upto = min(target, self._next.get(tp, 0))  # only what we have read ourselves
        cache = self._cache.get(tp, {})
        for offset in range(done, upto):
            fields = cache.get(offset)
            if fields is not None:  # offsets without a message are control records
                self._outbox.append({"action": "consume", **fields, "group": group})
        self._committed[key] = max(done, upto)
        if upto >= target:
            del self._targets[key]

    # -- errors ---------------------------------------------------------------------------------

    def _on_client_error(self, error: KafkaError) -> None:
        # Called by librdkafka for client-level errors (all brokers down, transport): it retries by
        # itself; only a fatal error is the end.
        self._note_error(KafkaException(error))
        if error.fatal():
            self.fail(f"topic source for {self._service!r}: fatal Kafka client error: {error}")

    def _note_error(self, exc: BaseException) -> None:
        self._last_error = str(exc)
        self._counts["errors"] += 1

    def fail(self, message: str) -> None:
        if not self._failed:
            self._failed = True
            self._flush()
            self.send({"op": "failed", "error": message})


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    return remaining


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the line above ran
        os._exit(0)


def main() -> None:
    fd, parent = int(sys.argv[1]), int(sys.argv[2])
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle
    channel = _Channel(socket.socket(fileno=fd))
    threading.Thread(target=channel.listen, name="faultbox-topic-requests", daemon=True).start()
    while True:  # one source after another, until the parent closes the socket (or says "stop")
        config = channel.next_config()
        source = Reader(channel, config)
        try:
            source.start()
        except (KafkaException, TimeoutError) as exc:
            channel.send({"op": "start_failed", "error": str(exc) or type(exc).__name__})
            os._exit(0)
        channel.send({"op": "ready"})
        try:
            source.run()
            source.close()
        except BaseException as exc:  # a bug: say what it was, then let the parent report the exit
            log.exception("topic reader crashed")
            with contextlib.suppress(OSError):
                source.fail(f"topic source for {config['service']!r} crashed: {exc!r}")
            sys.stderr.flush()
            os._exit(1)
        del source  # nothing of this source is left for the next
        channel.send({"op": "released"})


if __name__ == "__main__":
    main()
