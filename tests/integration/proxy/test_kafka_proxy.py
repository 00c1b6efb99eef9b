"""The Kafka proxy with confluent-kafka (librdkafka) against a real Tansu broker: addresses rewritten so
clients stay on the proxy, a consumer group, acks=0, error/delay/drop/duplicate per topic, recording,
and frames kio does not know relayed untouched. What a test stores is read back from the broker
directly, not through the proxy."""

from __future__ import annotations

import logging
import socket
import socketserver
import struct
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from faultbox.deps import kafka
from faultbox.deps.base import free_port
from faultbox.model.proxy import ProxyAction, ProxyFault

QUIET = {"log_level": 2}  # librdkafka logs every reset connection; the tests provoke some


@pytest.fixture
def broker(workdir: str, serve: Callable[..., object]) -> int:
    port = free_port()
    serve(kafka.prepare(workdir, port))
    return port


def _addr(port: int) -> str:
    return f"127.0.0.1:{port}"


def _wait(cond: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _read_topic(port: int, topic: str, timeout: float = 15.0) -> list[bytes]:
    """Every value stored in `topic`, read from the broker on `port` to the end of each partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": _addr(port),
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            **QUIET,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"{topic}: partitions {sorted(at_end)} of {len(partitions)} read"
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is None:
                values.append(msg.value())
            elif err.code() == KafkaError._PARTITION_EOF:
                at_end.add(msg.partition())
            else:
                raise AssertionError(f"reading {topic}: {err}")
        return values
    finally:
        consumer.close()


def _producer(port: int, **conf: object) -> Producer:
    return Producer({"bootstrap.servers": _addr(port), "message.timeout.ms": 20000, **QUIET, **conf})


def _deliver(producer: Producer, topic: str, value: bytes, timeout: float = 20.0) -> list[object]:
    """Produce one message and flush; the delivery errors (empty: delivered)."""
    errors: list[object] = []
    producer.produce(topic, value, on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert producer.flush(timeout) == 0, "the message was not delivered in time"
    return errors


def test_metadata_points_at_the_proxy_and_a_consumer_group_works(proxy_to, broker: int) -> None:
    p = proxy_to("kafka", broker, record=True)
    admin = AdminClient({"bootstrap.servers": _addr(p.port), **QUIET})
    brokers = admin.list_topics(timeout=10).brokers
    assert [(b.host, b.port) for b in brokers.values()] == [("127.0.0.1", p.port)]

    producer = _producer(p.port)
    for i in range(3):
        producer.produce("orders", key=b"k", value=f"m{i}".encode())
    assert producer.flush(20) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": _addr(p.port),
            "group.id": "g1",
            "session.timeout.ms": 6000,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **QUIET,
        }
    )
    try:
        consumer.subscribe(["orders"])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < 3:
            assert time.monotonic() < deadline, f"consumed {got}"
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
        assert got == [b"m0", b"m1", b"m2"]
        committed = consumer.commit(asynchronous=False)
        assert committed and all(tp.error is None for tp in committed)
        stored = consumer.committed([TopicPartition("orders", tp.partition) for tp in committed], timeout=10)
        assert sum(tp.offset for tp in stored if tp.offset >= 0) == 3
    finally:
        consumer.close()
    # The clients kept coming back through the proxy for every API, the group's included.
    methods = {e["method"] for e in p.of("proxy_request")}
    assert {"produce", "fetch", "find_coordinator", "join_group", "sync_group", "offset_commit"} <= methods
    assert not p.of("proxy_warning")


@pytest.mark.parametrize("record", [False, True], ids=["relayed", "decoded"])
def test_acks0_producer_does_not_wait_for_responses(proxy_to, broker: int, record: bool) -> None:
    p = proxy_to("kafka", broker, record=record)
    producer = _producer(p.port, acks=0)
    for i in range(20):
        producer.produce("fire", f"f{i}".encode())
    assert producer.flush(20) == 0
    # The producer's next request on its connection is answered: nothing waits for a produce response.
    assert "fire" in producer.list_topics("fire", timeout=10).topics
    _wait(lambda: sorted(_read_topic(broker, "fire")) == sorted(f"f{i}".encode() for i in range(20)), what="messages")
    if record:
        produced = [e for e in p.of("proxy_request") if e["method"] == "produce"]
        assert produced and all(e["status"] == "ok" and e["topic"] == "fire" for e in produced)


def _fired(p, action: str) -> list[dict[str, str]]:
    return [e for e in p.of("proxy") if e["action"] == action]


def test_not_leader_on_the_first_produce_is_retried_and_stored_once(proxy_to, broker: int) -> None:
    p = proxy_to("kafka", broker)
    producer = _producer(p.port, **{"enable.idempotence": True})
    assert not _deliver(producer, "warmup", b"w")  # connections, producer id and metadata are ready
    rule = ProxyFault(ProxyAction.ERROR, (("method", "produce"), ("topic", "payments")), code="NOT_LEADER_OR_FOLLOWER")
    p.install(rule)
    errors: list[object] = []
    producer.produce("payments", b"pay-1", on_delivery=lambda err, msg: errors.append(err) if err else None)
    deadline = time.monotonic() + 15
    while not _fired(p, "error"):  # the first produce was answered with the error: let the retry through
        assert time.monotonic() < deadline, "the produce never reached the proxy"
        producer.poll(0.01)
    stats = p.clear()
    assert producer.flush(20) == 0 and not errors
    assert [fired for _, fired, _ in stats.values()] == [len(_fired(p, "error"))]
    event = _fired(p, "error")[0]
    assert (event["method"], event["topic"], event["code"]) == ("produce", "payments", "NOT_LEADER_OR_FOLLOWER")
    assert _read_topic(broker, "payments") == [b"pay-1"]


def test_duplicate_stores_a_plain_producers_message_twice(proxy_to, broker: int) -> None:
    p = proxy_to("kafka", broker)
    producer = _producer(p.port, **{"enable.idempotence": False, "acks": 1})
    assert not _deliver(producer, "warmup", b"w")
    p.install(ProxyFault(ProxyAction.DUPLICATE, (("topic", "audit"),)))
    assert not _deliver(producer, "audit", b"entry-1")
    assert not _deliver(producer, "other", b"not-duplicated")
    p.clear()
    assert _read_topic(broker, "audit") == [b"entry-1", b"entry-1"]
    assert _read_topic(broker, "other") == [b"not-duplicated"]
    assert [e["topic"] for e in _fired(p, "duplicate")] == ["audit"]


def test_error_on_one_topic_of_a_commit_forwards_the_other(proxy_to, broker: int) -> None:
    direct = _producer(broker)
    direct.produce("ta", b"x", partition=0)
    direct.produce("tb", b"y", partition=0)
    assert direct.flush(20) == 0
    p = proxy_to("kafka", broker, record=True)
    p.install(
        ProxyFault(ProxyAction.ERROR, (("method", "offset_commit"), ("topic", "ta")), code="TOPIC_AUTHORIZATION_FAILED")
    )
    consumer = Consumer({"bootstrap.servers": _addr(p.port), "group.id": "c1", "enable.auto.commit": False, **QUIET})
    try:
        with pytest.raises(KafkaException) as failed:
            consumer.commit(offsets=[TopicPartition("ta", 0, 1), TopicPartition("tb", 0, 1)], asynchronous=False)
        assert failed.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        consumer.close()
    # One request carried both topics: ta was answered by the proxy, tb committed by the broker.
    commits = [e for e in p.of("proxy_request") if e["method"] == "offset_commit"]
    assert [(e["topic"], e["status"]) for e in commits] == [("ta,tb", "TOPIC_AUTHORIZATION_FAILED")]
    reader = Consumer({"bootstrap.servers": _addr(broker), "group.id": "c1", **QUIET})
    try:
        stored = reader.committed([TopicPartition("ta", 0), TopicPartition("tb", 0)], timeout=10)
    finally:
        reader.close()
    assert [(tp.topic, tp.offset) for tp in stored] == [("ta", OFFSET_INVALID), ("tb", 1)]


class _Log(logging.Handler):
    """librdkafka's log lines, to check that it parsed every answer of the proxy."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_fetch_error_on_one_topic_still_delivers_the_other(proxy_to, broker: int) -> None:
    direct = _producer(broker)
    direct.produce("fa", b"a1", partition=0)
    direct.produce("fb", b"b1", partition=0)
    assert direct.flush(20) == 0
    p = proxy_to("kafka", broker)
    # Fetch v13+ names topics by id: the proxy names them from the Metadata it relayed.
    p.install(ProxyFault(ProxyAction.ERROR, (("method", "fetch"), ("topic", "fa")), code="NOT_LEADER_OR_FOLLOWER"))
    log = _Log()
    logger = logging.getLogger(f"rdkafka-{uuid.uuid4().hex}")
    logger.addHandler(log)
    logger.propagate = False
    consumer = Consumer(
        {"bootstrap.servers": _addr(p.port), "group.id": "f", "enable.auto.commit": False}, logger=logger
    )
    try:
        consumer.assign([TopicPartition("fa", 0, OFFSET_BEGINNING), TopicPartition("fb", 0, OFFSET_BEGINNING)])
        got: list[bytes] = []
        deadline = time.monotonic() + 15
        while not got or len(_fired(p, "error")) < 2:  # fb delivered, fa answered with the error twice
            assert time.monotonic() < deadline, f"got {got}"
            msg = consumer.poll(0.05)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
        assert got == [b"b1"]
        p.clear()
        while len(got) < 2:
            assert time.monotonic() < deadline, f"got {got}"
            msg = consumer.poll(0.05)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
        assert got == [b"b1", b"a1"]
    finally:
        consumer.close()
    assert {e["topic"] for e in _fired(p, "error")} == {"fa"}
    assert not [line for line in log.lines if "PROTOERR" in line or "parse" in line.lower()]


def test_metadata_error_names_the_matched_topic_only(proxy_to, broker: int) -> None:
    p = proxy_to("kafka", broker)
    p.install(ProxyFault(ProxyAction.ERROR, (("method", "metadata"), ("topic", "ghost")), code="LEADER_NOT_AVAILABLE"))
    admin = AdminClient({"bootstrap.servers": _addr(p.port), **QUIET})
    ghost = admin.list_topics("ghost", timeout=10)
    assert ghost.topics["ghost"].error.code() == KafkaError.LEADER_NOT_AVAILABLE
    assert [(b.host, b.port) for b in ghost.brokers.values()] == [("127.0.0.1", p.port)]
    assert admin.list_topics("seen", timeout=10).topics["seen"].error is None


def test_delay_holds_the_matched_produce(proxy_to, broker: int) -> None:
    p = proxy_to("kafka", broker)
    producer = _producer(p.port)
    assert not _deliver(producer, "warmup", b"w")
    p.install(ProxyFault(ProxyAction.DELAY, (("method", "produce"), ("topic", "slow")), delay=0.6))
    start = time.monotonic()
    assert not _deliver(producer, "slow", b"s")
    assert time.monotonic() - start >= 0.6
    event = _fired(p, "delay")[0]
    assert (event["topic"], event["delay_ms"]) == ("slow", "600")
    assert not _deliver(producer, "quick", b"q")
    assert len(_fired(p, "delay")) == 1


def test_drop_resets_the_connection_and_the_client_reconnects(proxy_to, broker: int) -> None:
    p = proxy_to("kafka", broker)
    producer = _producer(p.port, **{"enable.idempotence": False, "acks": 1})
    assert not _deliver(producer, "warmup", b"w")
    opened = len(p.of("proxy_conn_open"))
    p.install(ProxyFault(ProxyAction.DROP, (("method", "produce"), ("topic", "fragile"))))
    errors: list[object] = []
    producer.produce("fragile", b"f-1", on_delivery=lambda err, msg: errors.append(err) if err else None)
    deadline = time.monotonic() + 15
    while not _fired(p, "drop"):
        assert time.monotonic() < deadline, "the produce never reached the proxy"
        producer.poll(0.01)
    p.clear()
    assert producer.flush(20) == 0 and not errors
    assert len(p.of("proxy_conn_open")) > opened  # it came back on a new connection
    assert _read_topic(broker, "fragile") == [b"f-1"]  # the dropped request never reached the broker


def _request(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    """A request frame with a v1 (non-flexible) header, client id "raw"."""
    frame = struct.pack(">hhih", api_key, version, correlation_id, 3) + b"raw" + body
    return struct.pack(">i", len(frame)) + frame


def _response(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the connection closed"
            data += chunk
        return data

    (size,) = struct.unpack(">i", exactly(4))
    return exactly(size)


def test_a_version_kio_does_not_know_is_relayed_untouched(proxy_to, broker: int) -> None:
    p = proxy_to("kafka", broker)
    # ListOffsets v0 (kio starts at v1): replica -1, topic "t", partition 0, latest offset, at most 1.
    body = struct.pack(">ii", -1, 1) + struct.pack(">h", 1) + b"t" + struct.pack(">iiqi", 1, 0, -1, 1)
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as sock:
        sock.sendall(_request(2, 0, 77, body))
        assert struct.unpack_from(">i", _response(sock))[0] == 77
        # The connection still works, and ApiVersions only offers what kio decodes (ListOffsets v1+).
        sock.sendall(_request(18, 0, 78, b""))
        answer = _response(sock)
    correlation_id, error, count = struct.unpack_from(">ihi", answer)
    assert (correlation_id, error) == (78, 0)
    ranges = {k: (lo, hi) for k, lo, hi in (struct.unpack_from(">hhh", answer, 10 + 6 * i) for i in range(count))}
    assert ranges[2][0] == 1 and ranges[3] == (0, 12)
    warnings = [e["warning"] for e in p.of("proxy_warning")]
    assert len(warnings) == 1 and "list_offsets (api key 2) v0" in warnings[0]


class _Banner(socketserver.StreamRequestHandler):
    """Not Kafka: speaks first, then echoes lines."""

    def handle(self) -> None:
        self.wfile.write(b"+OK\r\n")
        for line in self.rfile:
            self.wfile.write(b"ECHO " + line)


def test_a_stream_that_is_not_kafka_is_relayed_untouched(proxy_to) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Banner)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        p = proxy_to("kafka", server.server_address[1])
        with socket.create_connection(("127.0.0.1", p.port), timeout=10) as sock:
            f = sock.makefile("rb")
            assert f.readline() == b"+OK\r\n"  # 5 bytes no request asked for: not held back
            sock.sendall(b"GET / HTTP/1.1\r\n")  # a length of 1.2 GB: not a Kafka request either
            assert f.readline() == b"ECHO GET / HTTP/1.1\r\n"
        _wait(lambda: len(p.of("proxy_warning")) == 2, what="two warnings")
    finally:
        server.shutdown()
        server.server_close()
