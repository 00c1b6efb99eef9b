"""TopicSource against a real Tansu broker and real confluent-kafka clients."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from depserver import Server

from faultbox.deps import ServerPlan, free_port, kafka
from faultbox.sources import SourceError, topic
from faultbox.sources.topic import TopicSource
from support import cmdline, descendants_alive, ours_alive, process_tree, wait_until

Serve = Callable[[ServerPlan], Server]


class Sink:
    def __init__(self) -> None:
        self.events: list[dict[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, type: str, service: str, fields: dict[str, str], data: dict[str, object] | None) -> None:
        assert (type, service, data) == ("topic", "bus", None)
        assert all(isinstance(v, str) for v in fields.values())
        with self.lock:
            self.events.append(fields)

    def of(self, action: str, topic: str) -> list[dict[str, str]]:
        with self.lock:
            return [e for e in self.events if e["action"] == action and e["topic"] == topic]


@pytest.fixture
def broker(workdir: str, serve: Serve) -> str:
    return serve(kafka.prepare(workdir, free_port())).plan.endpoint


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def source(broker: str, sink: Sink) -> Iterator[TopicSource]:
    src = TopicSource(broker, "bus", sink)
    src.start()
    yield src
    src.stop()


def billing_consumer(bootstrap: str) -> Consumer:
    """A consumer of the system under test: group "billing", committing by hand."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "billing",
            "session.timeout.ms": 6000,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(10) == 0


def test_produce_events_with_json_fields(broker: str, sink: Sink) -> None:
    produce(broker, "old", [(b"k0", b"before start")])
    src = TopicSource(broker, "bus", sink)
    src.start()
    try:
        order = {
            "order_id": 42,
            "total": 1.50,
            "ok": True,
            "items": [{"sku": "a", "qty": 2}],
            "note": None,
            "topic": "shadowed",
        }
        produce(broker, "orders", [(b"o1", json.dumps(order).encode()), (None, b"plain \xff text")])
        produce(broker, "old", [(b"k0", b"after start")])
        src.barrier(10)
    finally:
        src.stop()
    first, second = sorted(sink.of("produce", "orders"), key=lambda e: e.get("key", ""), reverse=True)
    assert {k: first[k] for k in ("action", "topic", "key", "order_id", "total", "ok", "items", "value_topic")} == {
        "action": "produce",
        "topic": "orders",
        "key": "o1",
        "order_id": "42",
        "total": "1.5",  # as written by json.dumps in the message
        "ok": "true",
        "items": '[{"qty":2,"sku":"a"}]',
        "value_topic": "shadowed",  # a JSON key named like a meta field is renamed
    }
    assert "note" not in first  # null -> absent
    assert json.loads(first["value"]) == order
    assert int(first["partition"]) >= 0 and first["offset"].isdigit()
    assert "key" not in second and second["value"] == "plain \\xff text"
    # Only what was appended after start(): the message already in "old" is not an event.
    assert [e["value"] for e in sink.of("produce", "old")] == ["after start"]


def test_barrier_covers_messages_just_produced(broker: str, source: TopicSource, sink: Sink) -> None:
    for i in range(20):
        produce(broker, "burst", [(str(i).encode(), b"{}")])
        source.barrier(10)
        assert len(sink.of("produce", "burst")) == i + 1
    stats = source.stats()
    assert stats["produce_events"] == 20 and stats["errors"] == 0, stats


def test_consume_events_follow_group_commits_without_joining(broker: str, source: TopicSource, sink: Sink) -> None:
    produce(broker, "payments", [(f"k{i}".encode(), json.dumps({"n": i}).encode()) for i in range(6)])
    assigned: list[list[TopicPartition]] = []
    revoked: list[list[TopicPartition]] = []
    consumer = billing_consumer(broker)
    joined_at = time.monotonic()
    consumer.subscribe(
        ["payments"],
        on_assign=lambda _c, parts: assigned.append(parts),
        on_revoke=lambda _c, parts: revoked.append(parts),
    )
    try:
        got = _poll(consumer, 6)
        join_delay = time.monotonic() - joined_at
        print(f"consumer group join + first 6 messages: {join_delay:.2f}s")
        source.barrier(10)
        assert sink.of("consume", "payments") == []  # delivered but not committed yet
        consumer.commit(asynchronous=False)
        source.barrier(10)
        consumed = sink.of("consume", "payments")
        assert sorted(e["n"] for e in consumed) == [str(i) for i in range(6)]
        assert {e["group"] for e in consumed} == {"billing"}
        assert {(e["partition"], e["offset"]) for e in consumed} == {(str(p), str(o)) for p, o in got}
        # Each message's produce event came before its consume event.
        with sink.lock:
            order = [(e["action"], e["partition"], e["offset"]) for e in sink.events]
        for _, p, o in (x for x in order if x[0] == "consume"):
            assert order.index(("produce", p, o)) < order.index(("consume", p, o))

        # More messages: only the new ones become consume events.
        produce(broker, "payments", [(b"k0", b'{"n": 6}'), (b"k1", b'{"n": 7}')])
        _poll(consumer, 2)
        consumer.commit(asynchronous=False)
        source.barrier(10)
        assert sorted(e["n"] for e in sink.of("consume", "payments")) == [str(i) for i in range(8)]

        # The observer never joined: the SUT consumer kept all partitions, with no rebalance...
        assert len(assigned) == 1 and len(assigned[0]) == 4 and revoked == []
        admin = AdminClient({"bootstrap.servers": broker})
        groups = [g.group_id for g in admin.list_consumer_groups(request_timeout=5).result().valid]
        assert groups == ["billing"]  # ...and its own group id does not exist on the broker
        own = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(source.group_id)])
        for future in own.values():
            assert all(tp.offset < 0 for tp in future.result().topic_partitions or [])
        # The group's committed offsets are exactly what the SUT consumer committed.
        committed = consumer.committed([TopicPartition("payments", p) for p in range(4)], timeout=5)
        offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("billing")])
        remote = {tp.partition: tp.offset for tp in offsets["billing"].result().topic_partitions or []}
        assert remote == {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
    finally:
        consumer.close()


def test_barrier_reports_a_dead_broker(workdir: str, serve: Serve, sink: Sink) -> None:
    server = serve(kafka.prepare(workdir, free_port()))
    src = TopicSource(server.plan.endpoint, "bus", sink, request_timeout=1.0)
    src.start()
    try:
        server.kill()
        with pytest.raises(SourceError, match="topic barrier"):
            src.barrier(0.5)
    finally:
        src.stop()


def test_a_killed_reader_fails_its_source_not_the_runner(broker: str) -> None:
    events: list[tuple[str, dict[str, str]]] = []

    def sink(type: str, service: str, fields: dict[str, str], data: dict[str, object] | None) -> None:
        events.append((type, fields))

    src = TopicSource(broker, "bus", sink)
    src.start()
    pid = src.reader_pid
    try:
        # librdkafka runs in the reader, a child of this process; none of it here.
        assert pid is not None and pid in process_tree(os.getpid())
        assert "faultbox.sources.topic_reader" in cmdline(pid)
        produce(broker, "orders", [(b"k", b"before")])
        src.barrier(10)
        assert [f["value"] for t, f in events if t == "topic"] == ["before"]

        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: any(t == "source_error" for t, _ in events), "the source to report its reader's end")
        [(_, failure)] = [(t, f) for t, f in events if t == "source_error"]
        assert failure["fatal"] == "true"
        assert f"topic source for 'bus': its reader process (pid {pid}) was killed by SIGKILL" in failure["error"]
        with pytest.raises(SourceError, match="killed by SIGKILL"):
            src.barrier(5)
        assert descendants_alive([pid]) == [], "the dead reader was reaped"
    finally:
        src.stop()

    # The next source starts a reader of its own, which sees what happens from then on.
    again = TopicSource(broker, "bus", sink)
    again.start()
    try:
        assert again.reader_pid != pid
        produce(broker, "orders", [(b"k", b"after")])
        again.barrier(10)
        assert [f["value"] for t, f in events if t == "topic"] == ["before", "after"]
    finally:
        again.stop()
    assert descendants_alive([pid]) == []
    # The healthy one is kept for the next source, and it is the only reader left.
    assert topic._readers.spare_pid() == again.reader_pid
    assert idle_readers() == [again.reader_pid]


def test_the_next_source_reuses_a_healthy_reader_afresh(broker: str) -> None:
    """One reader serves two sources in turn: the second sees nothing of the first's messages, and
    its groups' baselines are its own."""
    first, second = Sink(), Sink()
    consumer = billing_consumer(broker)
    try:
        src = TopicSource(broker, "bus", first)
        src.start()
        pid = src.reader_pid
        try:
            produce(broker, "alpha", [(b"a", f'{{"n": {i}}}'.encode()) for i in range(3)])
            consumer.subscribe(["alpha"])
            _poll(consumer, 3)
            consumer.commit(asynchronous=False)
            src.barrier(10)
        finally:
            src.stop()
        assert sorted(e["n"] for e in first.of("produce", "alpha")) == ["0", "1", "2"]
        assert sorted(e["n"] for e in first.of("consume", "alpha")) == ["0", "1", "2"]
        assert topic._readers.spare_pid() == pid and idle_readers() == [pid]

        again = TopicSource(broker, "bus", second)
        again.start()
        try:
            assert again.reader_pid == pid, "the released reader serves the next source"
            assert idle_readers(again) == [], "and none was started ahead"
            produce(broker, "alpha", [(b"a", b'{"n": 3}')])
            produce(broker, "beta", [(b"b", b'{"n": 10}'), (b"b", b'{"n": 11}')])
            _poll(consumer, 1)
            consumer.commit(asynchronous=False)
            again.barrier(10)
            stats = again.stats()
        finally:
            again.stop()
    finally:
        consumer.close()
    # Only what happened after the second start, as a fresh reader would have seen it.
    produced = sorted((e["topic"], e["n"]) for e in second.events if e["action"] == "produce")
    assert produced == [("alpha", "3"), ("beta", "10"), ("beta", "11")]
    assert [(e["topic"], e["n"], e["group"]) for e in second.of("consume", "alpha")] == [("alpha", "3", "billing")]
    assert len(first.events) == 6, "nothing reached the first source after it stopped"
    # Its counts began again: every message read once, from the broker, for this source.
    assert stats["messages"] == 6 and stats["produce_events"] == 3 and stats["consume_events"] == 1, stats
    assert topic._readers.spare_pid() == pid and idle_readers() == [pid]


def idle_readers(*running: TopicSource) -> list[int]:
    """The reader processes alive under this process that none of the running sources holds."""
    return ours_alive("faultbox.sources.topic_reader", (source.reader_pid for source in running))


def _poll(consumer: Consumer, n: int, timeout: float = 20.0) -> list[tuple[int, int]]:
    got: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is None:
            got.append((msg.partition() or 0, msg.offset() or 0))
    assert len(got) == n, f"consumed {len(got)} of {n}"
    return got
