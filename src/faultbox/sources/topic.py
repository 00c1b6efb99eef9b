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
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
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

from faultbox.sources import Emit, SourceError

log = logging.getLogger(__name__)

# librdkafka logs each refused connection; route it to Python logging, silent unless configured.
_rdkafka_log = logging.getLogger("faultbox.sources.topic.rdkafka")
_rdkafka_log.addHandler(logging.NullHandler())
_rdkafka_log.propagate = False

_META = frozenset({"action", "topic", "partition", "offset", "key", "value", "group"})
_TICK = 0.003  # poll() timeout: how fast a barrier request or stop() is noticed (~0.5% CPU idle)
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

TP = tuple[str, int]


@dataclass
class _Barrier:
    deadline: float
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
        self._topics = frozenset(topics) if topics is not None else None
        self._poll_interval = poll_interval
        self._fetch_wait_ms = fetch_wait_ms
        self._request_timeout = request_timeout
        # Never committed to, so it never exists on the broker; unique so two observers never meet.
        self._group_id = f"faultbox-observer-{secrets.token_hex(6)}"

        self._lock = threading.Lock()
        self._requests: deque[_Barrier] = deque()
        self._failure: str | None = None
        self._last_error: str | None = None
        self._counts = dict.fromkeys(_COUNTERS, 0)  # fixed keys: stats() copies it concurrently
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

        # Reader-thread state (start() fills it before the thread exists).
        self._admin: AdminClient | None = None
        self._consumer: Consumer | None = None
        self._assigned: set[TP] = set()
        self._next: dict[TP, int] = {}  # next offset expected per partition
        self._produce_from: dict[TP, int] = {}  # offsets below it existed before start()
        self._cache: dict[TP, dict[int, dict[str, str]]] = {}
        self._committed: dict[tuple[str, TP], int] = {}  # consume events emitted up to here
        self._targets: dict[tuple[str, TP], int] = {}  # committed offsets ahead of what we read

    @property
    def group_id(self) -> str:
        """The observer's own group id (never joined, never committed)."""
        return self._group_id

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, read what the topics already hold (no events for it), record each group's
        committed offsets as the baseline, then follow in a background thread."""
        if self._thread is not None:
            raise RuntimeError("TopicSource already started")
        self._admin = AdminClient(
            {"bootstrap.servers": self._bootstrap, "client.id": "faultbox-observer"}, logger=_rdkafka_log
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
                "reconnect.backoff.ms": 10,
                "reconnect.backoff.max.ms": 250,
                "error_cb": self._on_client_error,
            },
            logger=_rdkafka_log,
        )
        deadline = time.monotonic() + self._request_timeout
        try:
            self._discover(deadline)
            self._catch_up(self._high_watermarks(deadline), deadline, emit=False)
            for tp in self._assigned:
                self._produce_from[tp] = self._position(tp)
            self._poll_groups(deadline, baseline=True)
        except (KafkaException, SourceError, TimeoutError) as exc:
            self._consumer.close()
            raise SourceError(
                f"topic source for {self._service!r} could not start on {self._bootstrap}: {exc}"
            ) from exc
        self._thread = threading.Thread(target=self._run, name=f"faultbox-topic-{self._service}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following. Safe to call twice; never raises. Commits nothing."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout=10)
        if thread.is_alive():
            log.warning("topic reader for %s did not stop within 10 s", self._service)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def barrier(self, timeout: float) -> None:
        """Return once every message appended before this call has its produce event, and the
        groups' committed offsets have been re-read once (their consume events emitted)."""
        self._raise_if_failed()
        if self._thread is None:
            raise SourceError(f"topic source for {self._service!r} is not running")
        request = _Barrier(deadline=time.monotonic() + timeout)
        with self._lock:
            self._counts["barriers"] += 1
            self._requests.append(request)
        # The reader answers even when it runs out of time; the grace covers one consume tick.
        if not request.done.wait(timeout + 1.0):
            self._raise_if_failed()
            raise SourceError(f"topic barrier for {self._service!r} timed out after {timeout:g}s (reader busy)")
        if request.error is not None:
            raise SourceError(request.error)
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        with self._lock:
            if self._failure is not None:
                raise SourceError(self._failure)

    # -- reader thread --------------------------------------------------------------------------

    def _run(self) -> None:
        assert self._consumer is not None
        next_poll = 0.0
        try:
            while not self._stop.is_set():
                with self._lock:
                    request = self._requests.popleft() if self._requests else None
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
                self._consume(_TICK)
        except BaseException as exc:  # a bug: never die silently, barrier() will raise it
            log.exception("topic reader crashed")
            self._fail(f"topic source for {self._service!r} crashed: {exc!r}")
        finally:
            self._consumer.close()  # nothing to commit: auto-commit is off and we never commit
            with self._lock:
                pending = list(self._requests)
                self._requests.clear()
            for request in pending:
                request.error = request.error or f"topic source for {self._service!r} stopped"
                request.done.set()

    def _serve(self, request: _Barrier) -> None:
        try:
            self._discover(request.deadline)
            self._catch_up(self._high_watermarks(request.deadline), request.deadline, emit=True)
            self._poll_groups(request.deadline)
        except (KafkaException, TimeoutError) as exc:
            last = f" (last broker error: {self._last_error})" if self._last_error else ""
            request.error = f"topic barrier for {self._service!r} failed: {str(exc) or type(exc).__name__}{last}"
        finally:
            request.done.set()

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
            self._send({"action": "produce", **fields}, "produce_events")
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
                self._send({"action": "consume", **fields, "group": group}, "consume_events")
        self._committed[key] = max(done, upto)
        if upto >= target:
            del self._targets[key]

    # -- helpers --------------------------------------------------------------------------------

    def _send(self, fields: dict[str, str], counter: str) -> None:
        try:
            self._emit("topic", self._service, fields, None)
            self._counts[counter] += 1
        except BaseException as exc:  # the callback must not kill the reader; surface it
            self._counts["emit_errors"] += 1
            self._fail(f"topic source for {self._service!r}: the emit callback raised {exc!r}")

    def _on_client_error(self, error: KafkaError) -> None:
        # Called by librdkafka for client-level errors (all brokers down, transport): it retries by
        # itself; only a fatal error is the end.
        self._note_error(KafkaException(error))
        if error.fatal():
            self._fail(f"topic source for {self._service!r}: fatal Kafka client error: {error}")

    def _note_error(self, exc: BaseException) -> None:
        with self._lock:
            self._last_error = str(exc)
            self._counts["errors"] += 1

    def _fail(self, message: str) -> None:
        log.error("%s", message)
        with self._lock:
            if self._failure is None:
                self._failure = message


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
