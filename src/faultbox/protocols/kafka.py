"""Kafka steps over confluent-kafka (librdkafka): publish and consume.

    publish(topic, key=None, value=None | data=None, headers={})
        .data = .value = {"published": True, "topic": t, "partition": p, "offset": o}
                                                once the broker acknowledged it
    consume(topic, group=None, max=1)
        .value = [{"topic", "partition", "offset", "key", "value", "headers", "json"?}, ...]
        .data  = the first of them, or None: the reference's shape (it reads one message)

publish. The payload is `value=` or `data=` (the reference's name; giving both is an error): a string
is sent as UTF-8, bytes as they are, anything else (dict, list, number, bool) as its JSON text; no payload sends a null
value (a tombstone). `key` is UTF-8; `headers` values are UTF-8. The step waits for the broker's
acknowledgement (acks=all) within its timeout; past it, the message is purged from the client's
queues and the step is ok=False (the broker may still have written it: "timeout" means "not
confirmed"). A keyed message goes to the partition Java clients would choose (murmur2); a message
without a key goes to partition 0, where librdkafka would pick a random partition: a seeded run must
be reproducible. A topic that does not exist is created by the broker on the first publish (Tansu
auto-creates topics with 4 partitions); with a broker that does not auto-create, librdkafka waits
for the topic to appear and the step ends ok=False at its timeout.

consume. Waits up to `timeout` for the first message, then returns it with the messages available
right now (up to the end of every partition), at most `max`:
  * group=None (default) reads from the beginning of every partition without joining a consumer
    group and without committing (manual assignment, a group id that never exists on the broker),
    so the test is not seen as a consumer of the system: repeated calls see the same messages. All
    messages up to the partitions' current ends are read, ordered by (timestamp, partition, offset),
    and the first `max` returned.
  * group="g" consumes as a member of group g (auto.offset.reset=earliest), in fetch order, and
    commits the returned messages before the step returns (the `topic` event source reports them as
    consumed by g). The member stays in the group between steps (one per group and topic, until the
    client closes), so the next call continues where this one stopped. The first call of a new group
    waits for the join: Tansu answers a new group's first JoinGroup once half the member's session
    timeout has passed, checked once a second (session.timeout.ms=2000 here: ~1 s, the least).
An empty topic gives ok=True, value=[] and data=None after the timeout; a topic that does not exist gives
ok=False at once (consume never creates topics). In each message, key and value are UTF-8 text
(backslash escapes for other bytes; None when absent), "json" is the parsed value when the value is
JSON, and headers is a dict of UTF-8 texts.

Errors never raise: an unreachable broker makes the step fail as soon as librdkafka reports a failed
connection attempt during the step (else at its timeout), with librdkafka's message.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from faultbox._util.frozen import FrozenDict, FrozenList, freeze, thaw
from faultbox._util.rdkafka import FAST_CONNECT
from faultbox.model.response import Response

# librdkafka logs every refused connection; the steps report what matters through Response.error.
_rdkafka_log = logging.getLogger("faultbox.protocols.kafka.rdkafka")
_rdkafka_log.addHandler(logging.NullHandler())
_rdkafka_log.propagate = False

_SLICE = 0.05  # longest single wait inside a step: how fast a connection failure is noticed
_COMMON: dict[str, Any] = {
    "client.id": "faultbox",
    # Connect to the broker the bootstrap named without librdkafka's default 50 ms wait, and
    # reconnect promptly after a broker restart (the default backoff grows to 10 s).
    **FAST_CONNECT,
    "reconnect.backoff.max.ms": 500,
}


class _StepFailed(Exception):
    """Ends a step with ok=False and this message."""


class _Errors:
    """Client-level errors from librdkafka's error_cb, kept to end a step early and explain it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[tuple[float, KafkaError]] = []

    def __call__(self, error: KafkaError) -> None:
        with self._lock:
            self._seen.append((time.monotonic(), error))
            del self._seen[:-20]

    def connect_failure(self, since: float) -> str | None:
        """librdkafka's text for a failed connection attempt after `since` (refused, timed out,
        reset during the handshake), or None. An idle connection closed by the broker does not
        count: librdkafka reconnects on demand."""
        with self._lock:
            for at, error in reversed(self._seen):
                if at < since:
                    break
                text = _error_text(error)
                if error.code() == KafkaError._TRANSPORT and text.startswith("Connect to") and "failed" in text:
                    return text
        return None

    def last(self, since: float) -> str | None:
        with self._lock:
            if self._seen and self._seen[-1][0] >= since:
                return _error_text(self._seen[-1][1])
        return None


class KafkaClient:
    def __init__(self, host: str, port: int, options: Mapping[str, Any]) -> None:
        self.bootstrap = str(options.get("endpoint") or f"{host}:{port}")
        self._errors = _Errors()
        self._producer: Producer | None = None
        self._readers: dict[tuple[str, str], _GroupReader] = {}
        # Held by a step. close() may come from the runner's thread while an abandoned test body
        # is still inside a step; librdkafka handles must not be closed under a running poll.
        self._busy = threading.Lock()

    def call(self, method: str, args: Mapping[str, Any]) -> Response:
        with self._busy:
            return self._call(method, args)

    def close(self) -> None:
        busy = not self._busy.acquire(timeout=1.0)
        producer, self._producer = self._producer, None
        readers, self._readers = self._readers, {}
        if busy:
            return  # the running step ends within its timeout; then the handles are freed unused
        try:
            if producer is not None:
                producer.purge()  # nothing may be sent after the test ended
                producer.flush(0)
            for reader in readers.values():
                reader.close()
        finally:
            self._busy.release()

    def _call(self, method: str, args: Mapping[str, Any]) -> Response:
        start = time.monotonic()
        timeout = float(args.get("timeout", 10.0))
        deadline = start + timeout
        try:
            if method == "publish":
                data: Any = self._publish(args, start, deadline, timeout)
            elif method == "consume":
                data = self._consume(args, start, deadline, timeout)
            else:
                raise _StepFailed(f"kafka has no step {method!r}; its steps: publish, consume")
        except _StepFailed as exc:
            return Response(ok=False, error=str(exc), duration_ms=_ms(start))
        except (KafkaException, BufferError, ValueError, TypeError) as exc:
            return Response(ok=False, error=_kafka_text(exc), duration_ms=_ms(start))
        if method == "consume":
            # The reference returns the one message it reads; faultbox returns up to max= of them.
            return _response(data[0] if data else None, start, value=data)
        return _response(data, start)

    # -- publish -------------------------------------------------------------------------------

    def _publish(self, args: Mapping[str, Any], start: float, deadline: float, timeout: float) -> Any:
        topic: str = args["topic"]
        if args.get("value") is not None and args.get("data") is not None:
            raise _StepFailed("kafka publish(): give the payload as value= or data=, not both")
        payload = args.get("value") if args.get("value") is not None else args.get("data")
        key: str | None = args.get("key")
        headers: list[tuple[str, str | bytes | None]] = [
            (str(k), str(v).encode()) for k, v in (args.get("headers") or {}).items()
        ]
        producer = self._producer_for()
        producer.poll(0)  # serves the error events queued since the last step...
        since = time.monotonic()  # ...so that they do not count against this one
        reports: list[tuple[KafkaError | None, Message]] = []
        extra: dict[str, Any] = {} if key is not None else {"partition": 0}
        producer.produce(
            topic,
            value=_payload(payload),
            key=key.encode() if key is not None else None,
            headers=headers or None,
            on_delivery=lambda err, msg: reports.append((err, msg)),
            **extra,
        )
        while not reports:
            remaining = deadline - time.monotonic()
            refused = self._errors.connect_failure(since)
            if remaining <= 0 or refused:
                # Give the message up: it must not be delivered by a later step's flush.
                producer.purge(in_queue=True, in_flight=True, blocking=False)
                producer.poll(0)
                if refused:
                    raise _StepFailed(f"cannot reach the Kafka broker at {self.bootstrap}: {refused}")
                why = self._errors.last(since)
                raise _StepFailed(
                    f"timeout: the broker did not acknowledge the message within {timeout:g}s"
                    + (f" (last error: {why})" if why else "")
                )
            producer.flush(min(remaining, _SLICE))
        err, msg = reports[0]
        if err is not None:
            raise _StepFailed(f"publish to {topic!r} failed: {err.str()}")
        # "published" and "topic" are the reference's result; partition and offset faultbox's.
        return FrozenDict(published=True, topic=msg.topic(), partition=msg.partition(), offset=msg.offset())

    def _producer_for(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    **_COMMON,
                    "acks": "all",
                    "linger.ms": 0,  # a step sends one message: do not wait for a batch
                    "partitioner": "murmur2_random",  # Java clients' choice for keyed messages
                    "error_cb": self._errors,
                },
                logger=_rdkafka_log,
            )
        return self._producer

    # -- consume -------------------------------------------------------------------------------

    def _consume(self, args: Mapping[str, Any], start: float, deadline: float, timeout: float) -> Any:
        topic: str = args["topic"]
        group: str | None = args.get("group")
        limit = int(args.get("max", 1))
        if limit < 1:
            raise _StepFailed(f"kafka consume(): max must be at least 1, not {limit}")
        if group is None:
            return self._read_without_group(topic, limit, start, deadline, timeout)
        reader = self._readers.get((group, topic))
        fresh = reader is None
        if reader is None:
            reader = _GroupReader(self.bootstrap, group, topic)
        try:
            # Every time, not only before joining: a subscription to a missing topic would just
            # wait, and a member of a group fetches nothing from a broker that stopped answering,
            # which would look like "no message" instead of ok=False.
            partitions_of(reader.consumer, topic, self.bootstrap, start, deadline, timeout, reader.errors, reader.stash)
        except _StepFailed:
            if fresh:
                reader.close()
            raise
        if fresh:
            reader.subscribe()
            self._readers[(group, topic)] = reader
        try:
            return reader.read(limit, start, deadline, timeout)
        except _ReaderBroken as exc:
            # Dropped: a new member restarts from the committed offsets (at-least-once).
            self._readers.pop((group, topic), None)
            reader.close_later()
            raise _StepFailed(str(exc)) from None

    def _read_without_group(self, topic: str, limit: int, start: float, deadline: float, timeout: float) -> Any:
        errors = _Errors()
        # A group id is required by librdkafka; this one is never joined nor committed to, so it
        # never exists on the broker (the `topic` source therefore sees no consumer).
        consumer = _consumer(self.bootstrap, f"faultbox-reader-{secrets.token_hex(6)}", errors)
        try:
            partitions = partitions_of(consumer, topic, self.bootstrap, start, deadline, timeout, errors, [])
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            messages: list[Message] = []
            at_end: set[int] = set()
            while not (messages and at_end >= set(partitions)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                refused = errors.connect_failure(start)
                if refused:
                    raise _StepFailed(f"cannot reach the Kafka broker at {self.bootstrap}: {refused}")
                msg = consumer.poll(min(remaining, _SLICE))
                if msg is None:
                    continue
                if _is_end(msg, at_end):
                    continue
                at_end.discard(msg.partition() or 0)
                messages.append(msg)
            messages.sort(key=lambda m: (m.timestamp()[1], m.partition(), m.offset()))
            return FrozenList(_message(m) for m in messages[:limit])
        finally:
            consumer.close()


class _ReaderBroken(Exception):
    """The group member cannot be trusted any more (a commit did not finish in time)."""


class _GroupReader:
    """One member of a consumer group, kept between steps so that each call continues where the
    previous one stopped (and pays the join once)."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.errors = _Errors()
        self.assigned: set[int] = set()
        self.at_end: set[int] = set()
        self.stash: list[Message] = []  # polled while checking the topic, not yet handed out
        self.consumer = _consumer(
            bootstrap,
            group,
            self.errors,
            **{
                "auto.offset.reset": "earliest",
                # Tansu holds the JoinGroup of a forming group's leader until half of this has
                # passed, re-checking once a second (DECISIONS §17, §25): 6000 cost 3 s per new
                # group, 2000 costs the minimum, 1 s. Heartbeats come from librdkafka's thread, so
                # the member stays in the group between steps however long the test takes.
                "session.timeout.ms": 2000,
                "heartbeat.interval.ms": 500,  # a third of the session timeout, as librdkafka advises
            },
        )

    def subscribe(self) -> None:
        self.consumer.subscribe(
            [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned = {tp.partition for tp in partitions}
        self.at_end.clear()  # positions restart from the committed offsets

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self.assigned -= gone
        self.at_end -= gone

    def read(self, limit: int, start: float, deadline: float, timeout: float) -> Any:
        messages: list[Message] = []
        since: float | None = None
        msg: Message | None
        # poll() hands out one message at a time, so nothing is read past what is returned and
        # the local position is exactly where the next step must continue.
        while True:
            if self.stash:
                msg = self.stash.pop(0)
            elif since is None:
                # Serves the error events queued since the last step: they must not end this one.
                msg = self.consumer.poll(0)
                since = time.monotonic()
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                refused = self.errors.connect_failure(since)
                if refused:
                    raise _StepFailed(f"cannot reach the Kafka broker at {self.bootstrap}: {refused}")
                msg = self.consumer.poll(min(remaining, _SLICE))
            if msg is not None and not _is_end(msg, self.at_end):
                self.at_end.discard(msg.partition() or 0)
                messages.append(msg)
            if len(messages) >= limit or (messages and self.assigned and self.at_end >= self.assigned):
                break
        if not messages and not self.assigned:
            why = self.errors.last(start)
            raise _StepFailed(
                f"timeout: the group coordinator assigned no partition of {self.topic!r} within {timeout:g}s"
                + (f" (last error: {why})" if why else "")
                + "; a new group's first join takes about 1 s"
            )
        if messages:
            self._commit(messages, deadline)
        return FrozenList(_message(m) for m in messages)

    def _commit(self, messages: list[Message], deadline: float) -> None:
        offsets: dict[int, int] = {}
        for m in messages:
            p = m.partition() or 0
            offsets[p] = max(offsets.get(p, 0), (m.offset() or 0) + 1)
        positions = [TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())]
        # A synchronous commit has no timeout of its own: run it aside and stop waiting at the
        # deadline (the member is then dropped, its in-flight commit left to finish).
        outcome = _bounded(lambda: self.consumer.commit(offsets=positions, asynchronous=False), deadline)
        if outcome is _TIMED_OUT:
            raise _ReaderBroken("timeout: the broker did not confirm the commit of the consumed messages")
        if isinstance(outcome, KafkaException):
            raise _ReaderBroken(f"commit of the consumed messages failed: {_kafka_text(outcome)}")

    def close(self) -> None:
        try:
            self.consumer.close()  # leaves the group at once instead of after the session timeout
        except (KafkaException, RuntimeError):
            pass

    def close_later(self) -> None:
        threading.Thread(target=self.close, name="faultbox-kafka-close", daemon=True).start()


# -- helpers -----------------------------------------------------------------------------------


def _consumer(bootstrap: str, group: str, errors: _Errors, **extra: Any) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            **_COMMON,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,  # "nothing more right now" ends a read early
            # Tansu holds a fetch for the whole fetch.wait.max.ms even when data arrives.
            "fetch.wait.max.ms": 10,
            "error_cb": errors,
            **extra,
        },
        logger=_rdkafka_log,
    )


def partitions_of(
    consumer: Consumer,
    topic: str,
    bootstrap: str,
    start: float,
    deadline: float,
    timeout: float,
    errors: _Errors,
    stash: list[Message],
) -> list[int]:
    """The topic's partitions, or _StepFailed when it does not exist. Asks for the whole cluster's
    metadata: a request naming the topic could make a broker create it."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            why = errors.last(start)
            raise _StepFailed(
                f"timeout: no metadata from the Kafka broker at {bootstrap} within {timeout:g}s"
                + (f" (last error: {why})" if why else "")
            )
        try:
            # Short requests, so that a refused connection (reported through error_cb, which
            # poll() serves) ends the step at once instead of at its timeout.
            metadata = consumer.list_topics(timeout=min(remaining, 0.25))
            break
        except KafkaException:
            msg = consumer.poll(0)  # serves error_cb; a group member may get a message: keep it
            if msg is not None:
                stash.append(msg)
            refused = errors.connect_failure(start)
            if refused:
                raise _StepFailed(f"cannot reach the Kafka broker at {bootstrap}: {refused}") from None
    info = metadata.topics.get(topic)
    if info is None or (info.error is not None and info.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
        raise _StepFailed(f"topic {topic!r} does not exist on the Kafka broker at {bootstrap}")
    if info.error is not None:
        raise _StepFailed(f"topic {topic!r}: {info.error.str()}")
    return sorted(info.partitions)


def _is_end(msg: Message, at_end: set[int]) -> bool:
    """True when `msg` is not a message: an end-of-partition notice (recorded) or an error."""
    error = msg.error()
    if error is None:
        return False
    if error.code() == KafkaError._PARTITION_EOF:
        at_end.add(msg.partition() or 0)
        return True
    if error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED) or error.fatal():
        raise _StepFailed(f"consume from {msg.topic()!r} failed: {error.str()}")
    return True  # transient: librdkafka retries by itself


def _payload(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(thaw(value), separators=(",", ":"), ensure_ascii=False).encode()


def _text(raw: bytes | str | None) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    return raw.decode("utf-8", "backslashreplace")


def _message(msg: Message) -> FrozenDict:
    value = _text(msg.value())
    out: dict[str, Any] = {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "key": _text(msg.key()),
        "value": value,
        "headers": _headers(msg),
    }
    if value is not None:
        try:
            out["json"] = json.loads(value)
        except ValueError:
            pass
    return freeze(out)  # type: ignore[no-any-return]


def _headers(msg: Message) -> dict[str, str | None]:
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {k: _text(v) for k, v in pairs}


_TIMED_OUT = object()


def _bounded(fn: Callable[[], object], deadline: float) -> object:
    """fn()'s result or KafkaException, or _TIMED_OUT when the deadline passes first (fn keeps
    running in its daemon thread)."""
    box: list[object] = []
    done = threading.Event()

    def run() -> None:
        try:
            box.append(fn())
        except KafkaException as exc:
            box.append(exc)
        done.set()

    threading.Thread(target=run, name="faultbox-kafka-commit", daemon=True).start()
    if not done.wait(max(deadline - time.monotonic(), 0.0)):
        return _TIMED_OUT
    return box[0]


def _error_text(error: KafkaError) -> str:
    """librdkafka's text without its "<broker>/<id>: " prefix (the step's error names the broker)."""
    text = str(error.str())
    head, sep, rest = text.partition(": ")
    return rest if sep and "/" in head and " " not in head else text


def _kafka_text(exc: BaseException) -> str:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return _error_text(exc.args[0])
    return str(exc)


def _response(data: Any, start: float, **value: Any) -> Response:
    return Response(
        body=json.dumps(thaw(data), separators=(",", ":"), ensure_ascii=False),
        data=data,
        ok=True,
        duration_ms=_ms(start),
        **value,
    )


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
