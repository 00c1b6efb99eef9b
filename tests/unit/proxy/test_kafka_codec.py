"""The pure parts of the Kafka proxy: frame headers, schema lookup, address and version rewrites, and
the error answers it builds (each checked by decoding what was built with kio)."""

from __future__ import annotations

import datetime
import importlib
import uuid
from types import ModuleType
from typing import Any

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.request_header.v1.header import RequestHeader as HeaderV1
from kio.schema.request_header.v2.header import RequestHeader as HeaderV2

from faultbox.proxy import kafka_answers as ka
from faultbox.proxy import kafka_codec as kc
from faultbox.proxy.kafka_frames import Frames, NotKafka


def _api(key: int, version: int) -> kc.Api:
    api = kc.api(key, version)
    assert api is not None
    return api


def _request(key: int, version: int, body: Any, correlation_id: int = 7, client_id: str | None = "app") -> bytes:
    api = _api(key, version)
    header_cls = HeaderV2 if api.request.__header_schema__ is HeaderV2 else HeaderV1
    header = header_cls(
        request_api_key=key, request_api_version=version, correlation_id=correlation_id, client_id=client_id
    )
    return kc.framed(kc.encode(header), kc.encode(body))


def _module(api: kc.Api, request: bool = True) -> ModuleType:
    """The kio module of an api's request (or response) schemas."""
    return importlib.import_module((api.request if request else api.response).__module__)


def _decode_response(api: kc.Api, frame: bytes) -> Any:
    assert kc.LENGTH.unpack_from(frame)[0] == len(frame) - 4
    return kc.decode(api.response, frame, kc.response_body_offset(frame, api))


def _produce(version: int, acks: int, topics: dict[str, list[int]]) -> Any:
    m = _module(_api(0, version))
    return m.ProduceRequest(
        acks=acks,
        timeout=datetime.timedelta(seconds=5),
        topic_data=tuple(
            m.TopicProduceData(
                name=t, partition_data=tuple(m.PartitionProduceData(index=p, records=b"rec") for p in ps)
            )
            for t, ps in topics.items()
        ),
    )


def test_api_lookup_knows_what_kio_decodes_and_what_needs_rewriting() -> None:
    assert _api(3, 12).name == "metadata" and _api(3, 12).addresses and _api(3, 12).rewrite
    assert _api(10, 2).addresses  # FindCoordinator v0-3: host/port at the top
    assert _api(0, 10).addresses  # Produce v10+: node_endpoints
    assert not _api(0, 9).addresses and not _api(2, 7).rewrite
    assert _api(18, 3).rewrite and not _api(18, 3).addresses
    assert kc.api(2, 0) is None  # ListOffsets v0: kio starts at v1
    assert kc.api(32000, 0) is None
    assert kc.api_name(1) == "fetch" and kc.api_name(32000) == "api_32000"


@pytest.mark.parametrize("version", [8, 10])  # legacy header and body, then flexible ones
def test_request_header_and_produce_acks(version: int) -> None:
    frame = _request(0, version, _produce(version, 0, {"orders": [0]}), correlation_id=42)
    size, key, ver, correlation_id = kc.REQUEST_HEAD.unpack_from(frame)
    assert (size, key, ver, correlation_id) == (len(frame) - 4, 0, version, 42)
    header, offset = kc.request_header(frame, _api(0, version))
    assert header.client_id == "app"
    assert kc.produce_acks(frame, _api(0, version), offset) == 0
    assert kc.decode(_api(0, version).request, frame, offset).topic_data[0].name == "orders"


def test_decode_ignores_bytes_after_the_body() -> None:
    # A Metadata v12 request for all topics as librdkafka 2.16 sends it: 3 bytes more than the schema.
    frame = kc.framed(bytes.fromhex("0003000c00000003000772646b61666b610000000000010000"))
    header, offset = kc.request_header(frame, _api(3, 12))
    assert header.client_id == "rdkafka"
    assert kc.decode(_api(3, 12).request, frame, offset).topics is None


def test_error_codes_by_name_or_number() -> None:
    assert kc.error_code("NOT_LEADER_OR_FOLLOWER") is ErrorCode.not_leader_or_follower
    assert kc.error_code(" not_leader_or_follower ") is ErrorCode.not_leader_or_follower
    assert kc.error_code("6") is ErrorCode.not_leader_or_follower
    assert kc.error_code("-1") is kc.error_code(None) is ErrorCode.unknown_server_error
    assert kc.error_name(ErrorCode.coordinator_not_available) == "COORDINATOR_NOT_AVAILABLE"
    with pytest.raises(ValueError, match="not a Kafka error code"):
        kc.error_code("NO_SUCH_ERROR")


def _metadata_response(version: int = 12) -> Any:
    m = _module(_api(3, version), request=False)
    tid = uuid.uuid4()
    partition = m.MetadataResponsePartition(
        error_code=ErrorCode.none,
        partition_index=0,
        leader_id=1,
        replica_nodes=(1,),
        isr_nodes=(1,),
        offline_replicas=(),
    )
    topic = m.MetadataResponseTopic(error_code=ErrorCode.none, name="orders", topic_id=tid, partitions=(partition,))
    broker = m.MetadataResponseBroker(node_id=1, host="10.0.0.5", port=9092)
    return m.MetadataResponse(throttle_time=datetime.timedelta(0), brokers=(broker,), topics=(topic,))


def test_readdress_points_every_broker_at_the_proxy() -> None:
    response = _metadata_response()
    moved = kc.readdress(response, "127.0.0.1", 4000)
    assert [(b.host, b.port, b.node_id) for b in moved.brokers] == [("127.0.0.1", 4000, 1)]
    assert moved.topics is response.topics
    assert kc.readdress(moved, "127.0.0.1", 4000) is moved  # nothing to change: the same object
    frame = kc.response_frame(_api(3, 12), 9, moved)
    assert _decode_response(_api(3, 12), frame).brokers[0].port == 4000

    coordinator = ka.blank(_api(10, 2).response, node_id=1, host="10.0.0.5", port=9092)
    assert (kc.readdress(coordinator, "h", 1).host, kc.readdress(coordinator, "h", 1).port) == ("h", 1)
    missing = ka.with_error(_api(10, 2).response, {}, (ErrorCode.coordinator_not_available, None))
    assert kc.readdress(missing, "h", 1) is missing  # port -1: no address to rewrite


def test_cap_versions_keeps_only_what_kio_decodes() -> None:
    m = _module(_api(18, 3), request=False)
    ranges = {2: (0, 9), 1: (0, 17), 3: (0, 12), 32000: (0, 3), 0: (0, 2)}
    response = m.ApiVersionsResponse(
        error_code=ErrorCode.none,
        api_keys=tuple(m.ApiVersion(api_key=k, min_version=lo, max_version=hi) for k, (lo, hi) in ranges.items()),
        throttle_time=datetime.timedelta(0),
    )
    capped = kc.cap_versions(response)
    got = {e.api_key: (e.min_version, e.max_version) for e in capped.api_keys}
    # ListOffsets and Fetch start where kio starts, unknown keys stay, Produce 0-2 meets no kio version.
    assert got == {2: (1, 9), 1: (4, 17), 3: (0, 12), 32000: (0, 3)}
    assert kc.cap_versions(capped) is capped


def test_produce_error_answer_round_trips() -> None:
    api = _api(0, 10)
    body = _produce(10, -1, {"orders": [0, 3]})
    shape = ka.topic_shape(api)
    assert shape is not None
    topics = ka.request_topics(shape, body, {})
    assert [name for name, _ in topics] == ["orders"]
    failure = (ErrorCode.not_leader_or_follower, "moved")
    answer = ka.error_response(api, body, failure, {id(topics[0][1]): failure})
    decoded = _decode_response(api, kc.response_frame(api, 7, answer))
    (topic,) = decoded.responses
    assert topic.name == "orders"
    assert [(p.index, p.error_code, p.base_offset, p.error_message) for p in topic.partition_responses] == [
        (0, ErrorCode.not_leader_or_follower, -1, "moved"),
        (3, ErrorCode.not_leader_or_follower, -1, "moved"),
    ]


def test_split_and_merge_keep_the_unmatched_topics() -> None:
    api = _api(0, 10)
    body = _produce(10, 1, {"a": [0], "b": [1]})
    shape = ka.topic_shape(api)
    assert shape is not None
    (_, a), (_, b) = ka.request_topics(shape, body, {})
    forwarded = ka.with_topics(shape, body, [b])
    assert [t.name for t in forwarded.topic_data] == ["b"] and forwarded.acks == 1
    broker_answer = ka.error_response(api, forwarded, (ErrorCode.none, None), {})
    merged = ka.add_topics(shape, broker_answer, [ka.error_topic(shape, a, (ErrorCode.kafka_storage_error, None))])
    assert [(t.name, t.partition_responses[0].error_code) for t in merged.responses] == [
        ("b", ErrorCode.none),
        ("a", ErrorCode.kafka_storage_error),
    ]


def test_fetch_topics_by_id_and_their_error_entries() -> None:
    api = _api(1, 16)
    m = _module(api)
    known, unknown = uuid.uuid4(), uuid.uuid4()
    body = m.FetchRequest(
        max_wait=datetime.timedelta(milliseconds=500),
        min_bytes=1,
        topics=tuple(
            m.FetchTopic(topic_id=t, partitions=(m.FetchPartition(partition=2, fetch_offset=0, partition_max_bytes=9),))
            for t in (known, unknown)
        ),
        forgotten_topics_data=(),
    )
    shape = ka.topic_shape(api)
    assert shape is not None
    topics = ka.request_topics(shape, body, {known: "orders"})
    assert [name for name, _ in topics] == ["orders", str(unknown)]
    entry = ka.error_topic(shape, topics[0][1], (ErrorCode.not_leader_or_follower, None))
    answer = ka.blank(api.response, responses=(entry,))
    (topic,) = _decode_response(api, kc.response_frame(api, 1, answer)).responses
    (part,) = topic.partitions
    assert topic.topic_id == known
    # Empty, not null, records: librdkafka rejects a null record set.
    assert (part.partition_index, part.error_code, part.high_watermark, part.records) == (
        2,
        ErrorCode.not_leader_or_follower,
        -1,
        b"",
    )


def test_answers_without_topics() -> None:
    join = _api(11, 5)
    m = _module(join)
    body = m.JoinGroupRequest(
        group_id="g",
        session_timeout=datetime.timedelta(seconds=6),
        member_id="",
        protocol_type="consumer",
        protocols=(),
    )
    answer = _decode_response(join, kc.response_frame(join, 3, ka.error_response(join, body, (ErrorCode(15), None))))
    assert (answer.error_code, answer.generation_id, answer.members) == (ErrorCode.coordinator_not_available, -1, ())

    find = _api(10, 4)
    m = _module(find)
    body = m.FindCoordinatorRequest(key_type=0, coordinator_keys=("g1", "g2"))
    answer = _decode_response(find, kc.response_frame(find, 4, ka.error_response(find, body, (ErrorCode(15), "x"))))
    assert [(c.key, c.error_code, c.port, c.error_message) for c in answer.coordinators] == [
        ("g1", ErrorCode.coordinator_not_available, -1, "x"),
        ("g2", ErrorCode.coordinator_not_available, -1, "x"),
    ]


def test_offset_fetch_answers_topics_group_by_group() -> None:
    api = _api(9, 9)
    m = _module(api)
    body = m.OffsetFetchRequest(
        groups=(
            m.OffsetFetchRequestGroup(
                group_id="g", topics=(m.OffsetFetchRequestTopics(name="t", partition_indexes=(0, 1)),)
            ),
        )
    )
    shape = ka.topic_shape(api)
    assert shape is not None and shape.groups is not None
    topics = ka.request_topics(shape, body, {})
    assert [name for name, _ in topics] == ["t"]
    failure = (ErrorCode.unstable_offset_commit, None)
    answer = _decode_response(api, kc.response_frame(api, 5, ka.error_response(api, body, failure, {})))
    (group,) = answer.groups
    assert (group.group_id, group.error_code) == ("g", ErrorCode.none)
    assert [(p.partition_index, p.error_code) for p in group.topics[0].partitions] == [
        (0, ErrorCode.unstable_offset_commit),
        (1, ErrorCode.unstable_offset_commit),
    ]


def test_metadata_errors_ids_and_first_error() -> None:
    response = _metadata_response()
    assert kc.metadata_ids(response) == {response.topics[0].topic_id: "orders"}
    assert kc.first_error(response) is None
    failed = kc.metadata_errors(response, {"orders": (ErrorCode.leader_not_available, None)})
    assert failed.topics[0].error_code is ErrorCode.leader_not_available
    assert kc.metadata_errors(response, {"other": (ErrorCode.leader_not_available, None)}).topics == response.topics
    assert kc.metadata_errors(response, {None: (ErrorCode(29), None)}).topics[0].error_code == 29
    assert kc.first_error(failed) is ErrorCode.leader_not_available


def test_frames_come_out_whole_and_bad_lengths_are_refused() -> None:
    frames = Frames(None)  # take() only reads the buffer
    one, two = kc.framed(b"12345678"), kc.framed(b"abcdefghij")
    frames.buf += one + two + two[:5]
    assert frames.take(8, 100) == one
    assert frames.take(8, 100) == two
    assert frames.take(8, 100) is None  # the third is not all there yet
    frames.buf += two[5:]
    assert frames.take(8, 100) == two and not frames.buf
    frames.buf += b"\x16\x03\x01\x02\x00"  # a TLS ClientHello read as a length
    with pytest.raises(NotKafka, match="369295618-byte frame is not Kafka"):
        frames.take(8, kc.MAX_REQUEST)
