"""The topics of a Kafka request, and the error answers the proxy builds for them (pure code, no I/O).

`topic_shape()` finds, for the APIs in `_TOPIC_LISTS`, the request's topic list and the response
list that answers it, by the field names Kafka's schemas use across versions: name, topic or
topic_id for a topic; partition_data, partitions or partition_indexes for its partitions;
index, partition or partition_index for a partition. That names every topic of a request, splits
a request into the topics it forwards and those it answers, and builds a well-formed answer entry
per answered topic (the error code on each of its partitions, -1/empty/null where the schema has
no default). offset_fetch v8+ lists topics per group (`Groups`).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeAlias
from uuid import UUID

from kio.schema.errors import ErrorCode

from faultbox.proxy.kafka_codec import ERROR_FIELDS, Api, Field, Schema, fields, first_field

Failure: TypeAlias = tuple[ErrorCode, str | None]  # an error code and its message

_TOPIC_KEYS = ("name", "topic", "topic_id")
_PARTITION_LISTS = ("partition_data", "partitions", "partition_indexes", "partition_responses", "results_by_partition")
_PARTITION_INDEXES = ("index", "partition_index", "partition")

# api key -> (request topic list, response topic list), candidate names of each: the APIs whose
# requests name topics and whose responses answer them topic by topic.
_TOPIC_LISTS: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {
    0: (("topic_data",), ("responses",)),  # produce
    1: (("topics",), ("responses",)),  # fetch
    2: (("topics",), ("topics",)),  # list_offsets
    3: (("topics",), ("topics",)),  # metadata
    8: (("topics",), ("topics",)),  # offset_commit
    9: (("topics",), ("topics",)),  # offset_fetch (v8+: in groups)
    19: (("topics",), ("topics",)),  # create_topics
    20: (("topic_names", "topics"), ("responses",)),  # delete_topics
    21: (("topics",), ("topics",)),  # delete_records
    23: (("topics",), ("topics",)),  # offset_for_leader_epoch
    28: (("topics",), ("topics",)),  # txn_offset_commit
    37: (("topics",), ("results",)),  # create_partitions
    47: (("topics",), ("topics",)),  # offset_delete
}

# api key -> (request list, response list, key field): APIs that answer per group or coordinator
# key rather than in one top-level error code.
_KEYED: dict[int, tuple[str, str, str]] = {
    9: ("groups", "groups", "group_id"),  # offset_fetch v8+
    10: ("coordinator_keys", "coordinators", "key"),  # find_coordinator v4+
    15: ("groups", "groups", "group_id"),  # describe_groups
    42: ("groups_names", "results", "group_id"),  # delete_groups
}


# -- blank entities ----------------------------------------------------------------------------------------


def _blank_value(f: Field) -> Any:
    t = f.type
    if isinstance(t, type) and issubclass(t, bytes) and not f.array:
        return b""  # records of an errored partition are empty, not null (librdkafka rejects null)
    if f.optional:
        return None
    if f.array:
        return ()
    if f.entity:
        return blank(t)
    if issubclass(t, ErrorCode):
        return ErrorCode.none
    if t is bool:
        return False
    if issubclass(t, int):
        return 0 if t.__name__.startswith("u") else -1
    if issubclass(t, float):
        return 0.0
    if issubclass(t, str):
        return ""
    if t is UUID:
        return UUID(int=0)
    if issubclass(t, datetime.timedelta):
        return datetime.timedelta(0)
    if issubclass(t, datetime.datetime):
        return datetime.datetime.fromtimestamp(0, datetime.UTC)
    raise TypeError(f"no blank value for {t!r}")


def blank(cls: Schema, **values: Any) -> Any:
    """An entity of `cls` with `values`, schema defaults, and -1/empty/null for fields without one."""
    for f in fields(cls).values():
        if f.required and f.name not in values:
            values[f.name] = _blank_value(f)
    return cls(**values)


def with_error(cls: Schema, values: dict[str, Any], failure: Failure) -> Any:
    """`blank(cls, **values)` with its error field(s) set (and error_message, given a message)."""
    have = fields(cls)
    for name in ERROR_FIELDS:
        if name in have:
            values[name] = failure[0]
    if failure[1] is not None and "error_message" in have:
        values["error_message"] = failure[1]
    return blank(cls, **values)


# -- topic shapes --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Groups:
    """The level above the topics in a request that batches groups (offset_fetch v8+)."""

    request_list: str
    response_list: str
    response_group: Schema


@dataclass(frozen=True, slots=True)
class TopicShape:
    """Where a request names its topics and how its response answers them."""

    request_list: str  # of the request, or of each group
    request_topic: Schema | None  # None: the list holds topic names
    name_field: str | None
    id_field: str | None
    partitions: Field | None  # of a request topic
    partition_index: str | None  # of a request partition; None: the partition is its index
    response_list: str
    response_topic: Schema
    response_partitions: Field | None  # of a response topic
    groups: Groups | None = None


@cache
def topic_shape(api: Api) -> TopicShape | None:
    lists = _TOPIC_LISTS.get(api.key)
    if lists is None:
        return None
    shape = _shape(api.request, api.response, lists)
    if shape is not None or api.key not in _KEYED:
        return shape
    names = _KEYED[api.key]
    req, resp = first_field(api.request, names[:1]), first_field(api.response, names[1:2])
    if req is None or resp is None or not (req.entity and resp.entity):
        return None
    inner = _shape(req.type, resp.type, lists)
    if inner is None:
        return None
    return dataclasses.replace(inner, groups=Groups(req.name, resp.name, resp.type))


def _shape(request: Schema, response: Schema, lists: tuple[tuple[str, ...], tuple[str, ...]]) -> TopicShape | None:
    req, resp = first_field(request, lists[0]), first_field(response, lists[1])
    if req is None or resp is None or not req.array or not resp.entity:
        return None
    if not req.entity:
        return TopicShape(req.name, None, None, None, None, None, resp.name, resp.type, None)
    have = fields(req.type)
    name = next((n for n in _TOPIC_KEYS[:2] if n in have), None)
    tid = "topic_id" if "topic_id" in have else None
    parts = first_field(req.type, _PARTITION_LISTS)
    index = None
    if parts is not None and parts.entity:
        found = first_field(parts.type, _PARTITION_INDEXES)
        index = found.name if found is not None else None
    rparts = first_field(resp.type, _PARTITION_LISTS)
    if rparts is not None and not rparts.entity:
        rparts = None
    return TopicShape(req.name, req.type, name, tid, parts, index, resp.name, resp.type, rparts)


def _topic_lists(shape: TopicShape, body: Any) -> list[Sequence[Any]]:
    if shape.groups is None:
        return [getattr(body, shape.request_list) or ()]
    return [getattr(g, shape.request_list) or () for g in getattr(body, shape.groups.request_list) or ()]


def request_topics(shape: TopicShape, body: Any, ids: Mapping[UUID, str]) -> list[tuple[str, Any]]:
    """(name, entry) for each topic of a request; empty when it names none (Metadata: all topics).
    A topic named only by id is looked up in `ids`, else named by the id itself."""
    out = []
    for entries in _topic_lists(shape, body):
        for entry in entries:
            if shape.request_topic is None:
                out.append((str(entry), entry))
                continue
            name = getattr(entry, shape.name_field) if shape.name_field else None
            if not name and shape.id_field:
                tid = getattr(entry, shape.id_field)
                name = ids.get(tid) or str(tid)
            out.append((name or "", entry))
    return out


def with_topics(shape: TopicShape, body: Any, entries: Sequence[Any]) -> Any:
    """The request with only `entries` as its topics (a shape without groups)."""
    assert shape.groups is None
    return dataclasses.replace(body, **{shape.request_list: tuple(entries)})


def error_topic(shape: TopicShape, entry: Any, failure: Failure) -> Any:
    """The response entry answering one request topic with `failure` on each of its partitions."""
    have = fields(shape.response_topic)
    values: dict[str, Any] = {}
    if shape.request_topic is None:
        values[next(n for n in _TOPIC_KEYS if n in have)] = entry
    else:
        asked = fields(shape.request_topic)
        values.update({k: getattr(entry, k) for k in _TOPIC_KEYS if k in have and k in asked})
    rparts = shape.response_partitions
    if rparts is None or shape.partitions is None:
        return with_error(shape.response_topic, values, failure)
    index = first_field(rparts.type, _PARTITION_INDEXES)
    answers = []
    for part in getattr(entry, shape.partitions.name) or ():
        number = part if shape.partition_index is None else getattr(part, shape.partition_index)
        answers.append(with_error(rparts.type, {index.name: number} if index else {}, failure))
    values[rparts.name] = tuple(answers)
    return blank(shape.response_topic, **values)


def add_topics(shape: TopicShape, response: Any, extra: Sequence[Any]) -> Any:
    have = tuple(getattr(response, shape.response_list) or ())
    return dataclasses.replace(response, **{shape.response_list: have + tuple(extra)})


def error_response(api: Api, body: Any, failure: Failure, topics: Mapping[int, Failure] | None = None) -> Any:
    """A whole response answering `body` with errors. With `topics` (id() of a request topic entry ->
    its failure), every topic of the request is answered, those not in `topics` with `failure`.
    Without, the error goes per group or coordinator key for the APIs answering that way, else in
    the top-level error code."""
    shape = topic_shape(api)
    if shape is not None and topics is not None:

        def answer(entries: Sequence[Any]) -> tuple[Any, ...]:
            return tuple(error_topic(shape, e, topics.get(id(e), failure)) for e in entries)

        if shape.groups is None:
            return blank(api.response, **{shape.response_list: answer(getattr(body, shape.request_list) or ())})
        g = shape.groups
        groups = getattr(body, g.request_list)
        answers = [
            blank(g.response_group, group_id=group.group_id, **{shape.response_list: answer(entries)})
            for group, entries in zip(groups, _topic_lists(shape, body), strict=True)
        ]
        return blank(api.response, **{g.response_list: tuple(answers)})
    values: dict[str, Any] = {}
    keyed = _KEYED.get(api.key)
    req = first_field(api.request, keyed[:1]) if keyed else None
    resp = first_field(api.response, keyed[1:2]) if keyed else None
    if keyed is not None and req is not None and resp is not None and resp.entity:
        key = keyed[2]
        items = getattr(body, req.name) or ()
        keys = [getattr(i, key) if dataclasses.is_dataclass(i) else i for i in items]
        values[resp.name] = tuple(with_error(resp.type, {key: k}, failure) for k in keys)
    return with_error(api.response, values, failure)
