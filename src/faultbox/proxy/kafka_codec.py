"""Kafka's wire format for the fault proxy, on top of kio's generated schemas (pure code, no I/O).

A frame is a big-endian int32 length and that many bytes; the functions here take whole frames,
length included. A request starts with its header (api key, api version, correlation id, client
id; tagged fields from header v2), a response with the correlation id (tagged fields from header
v1). Which header and body schema a frame uses depends on the request's api key and version, which
`api()` looks up in kio. Bodies are decoded by kio's native reader; the proxy encodes only what it
changes, with kio's writer (pure Python, slow: a Metadata response takes a fraction of a millisecond).
"""

from __future__ import annotations

import dataclasses
import io
import struct
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass
from functools import cache, lru_cache
from typing import Any, TypeAlias, get_args, get_origin
from uuid import UUID

from kio.index import KioIndexError, load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.index import api_key_map, schema_name_map
from kio.serial import entity_reader, entity_writer
from kio.serial.readers import read_compact_string_nullable, read_int16, read_nullable_legacy_string

# A kio entity class (a generated dataclass with __header_schema__, __flexible__, ...), typed loosely.
Schema: TypeAlias = Any

LENGTH = struct.Struct(">i")
REQUEST_HEAD = struct.Struct(">ihhi")  # length, api key, api version, correlation id

PRODUCE, METADATA, API_VERSIONS = 0, 3, 18

# Larger frames are not Kafka (a TLS ClientHello read as a length is ~369 MB): relayed raw.
MAX_REQUEST = 100 * 1024 * 1024  # the broker's default socket.request.max.bytes
MAX_RESPONSE = 1024 * 1024 * 1024

ERROR_FIELDS = ("error_code", "partition_error_code")


@dataclass(frozen=True, slots=True)
class Api:
    """One api key at one version, as kio knows it."""

    key: int
    version: int
    name: str
    request: Schema
    response: Schema
    response_header: Schema
    addresses: bool  # its responses can carry a broker's host and port
    rewrite: bool  # every response is decoded (to rewrite addresses or version ranges)


def api_name(key: int) -> str:
    return api_key_map.get(key, f"api_{key}")


@lru_cache(maxsize=4096)  # bounded: the keys come from the wire
def api(key: int, version: int) -> Api | None:
    """The schemas of one api key and version; None when kio does not know them."""
    name = api_key_map.get(key)
    if name is None or version not in schema_name_map[name]:
        return None
    try:
        request = load_request_schema(key, version)
        response = load_response_schema(key, version)
    except (KioIndexError, ImportError, AttributeError):
        return None
    addressed = _addressed(response)
    header = response.__header_schema__
    return Api(key, version, name, request, response, header, addressed, addressed or key == API_VERSIONS)


def kio_versions(name: str) -> tuple[int, int]:
    versions = schema_name_map[name]
    return min(versions), max(versions)


# -- decoding and encoding ---------------------------------------------------------------------------


def decode(cls: Schema, frame: bytes, offset: int) -> Any:
    """The entity of type `cls` at `offset` of `frame`. Bytes after it are ignored, as Kafka's own
    parsers do (librdkafka 2.16 sends 3 more than the schema has in some Metadata v12 requests)."""
    entity, _ = entity_reader(cls)(frame, offset)
    return entity


def request_header(frame: bytes, api: Api) -> tuple[Any, int]:
    """The header of a request frame and the offset of its body."""
    header, size = entity_reader(api.request.__header_schema__)(frame, 4)
    return header, 4 + size


def response_body_offset(frame: bytes, api: Api) -> int:
    if not api.response_header.__flexible__:
        return 8
    _, size = entity_reader(api.response_header)(frame, 4)
    return 4 + int(size)


def produce_acks(frame: bytes, api: Api, offset: int) -> int:
    """The acks of a produce request whose body starts at `offset`, read without decoding its records."""
    read = read_compact_string_nullable if api.request.__flexible__ else read_nullable_legacy_string
    _, size = read(frame, offset)  # transactional_id
    acks, _ = read_int16(frame, offset + size)
    return int(acks)


def encode(entity: Any) -> bytes:
    buffer = io.BytesIO()
    entity_writer(type(entity))(buffer, entity)
    return buffer.getvalue()


def framed(*parts: bytes) -> bytes:
    return LENGTH.pack(sum(map(len, parts))) + b"".join(parts)


def response_frame(api: Api, correlation_id: int, body: Any) -> bytes:
    return framed(encode(api.response_header(correlation_id=correlation_id)), encode(body))


# -- error codes -------------------------------------------------------------------------------------


def error_code(text: str | None) -> ErrorCode:
    """An error code from its name (any case) or its number as text; None: UNKNOWN_SERVER_ERROR."""
    if text is None:
        return ErrorCode.unknown_server_error
    value = text.strip()
    try:
        return ErrorCode(int(value))
    except ValueError:
        pass
    try:
        return ErrorCode[value.lower()]
    except KeyError:
        raise ValueError(f"{text!r} is not a Kafka error code") from None


def error_name(code: ErrorCode) -> str:
    return code.name.upper()


# -- schema introspection ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: Schema  # of an array: its items' type
    array: bool
    optional: bool
    entity: bool
    required: bool  # no default


@cache
def fields(cls: Schema) -> dict[str, Field]:
    out = {}
    for f in dataclasses.fields(cls):
        t: Any = f.type
        optional = get_origin(t) is types.UnionType
        if optional:
            t = next(a for a in get_args(t) if a is not types.NoneType)
        array = get_origin(t) is tuple
        if array:
            t = get_args(t)[0]
        required = f.default is MISSING and f.default_factory is MISSING
        out[f.name] = Field(f.name, t, array, optional, dataclasses.is_dataclass(t), required)
    return out


def first_field(cls: Schema, names: Iterable[str]) -> Field | None:
    have = fields(cls)
    return next((have[n] for n in names if n in have), None)


@cache
def _addressed(cls: Schema) -> bool:
    have = fields(cls)
    return ("host" in have and "port" in have) or any(_addressed(f.type) for f in have.values() if f.entity)


@cache
def _has_errors(cls: Schema) -> bool:
    have = fields(cls)
    return any(n in have for n in ERROR_FIELDS) or any(_has_errors(f.type) for f in have.values() if f.entity)


@cache
def _nested(cls: Schema, within: Callable[[Schema], bool]) -> tuple[Field, ...]:
    return tuple(f for f in fields(cls).values() if f.entity and within(f.type))


# -- rewrites --------------------------------------------------------------------------------------------


def readdress(entity: Any, host: str, port: int) -> Any:
    """`entity` with every broker address in it set to host:port (the same object when none changed).
    An entry without an address (port -1, as in a coordinator error) keeps it."""
    cls: Schema = type(entity)
    have = fields(cls)
    changes: dict[str, Any] = {}
    if "host" in have and "port" in have and entity.port >= 0 and (entity.host, entity.port) != (host, port):
        changes["host"], changes["port"] = host, port
    for f in _nested(cls, _addressed):
        value = getattr(entity, f.name)
        if value is None:
            continue
        if f.array:
            new = tuple(readdress(item, host, port) for item in value)
            if any(a is not b for a, b in zip(new, value, strict=True)):
                changes[f.name] = new
        else:
            item = readdress(value, host, port)
            if item is not value:
                changes[f.name] = item
    return dataclasses.replace(entity, **changes) if changes else entity


def cap_versions(response: Any) -> Any:
    """An ApiVersions response narrowed to the versions kio can decode (the same object when no range
    changes); an api whose ranges do not meet is left out, an api kio does not know is kept."""
    kept = []
    for entry in response.api_keys:
        name = api_key_map.get(entry.api_key)
        if name is None:
            kept.append(entry)
            continue
        low, high = kio_versions(name)
        lo, hi = max(entry.min_version, low), min(entry.max_version, high)
        if (lo, hi) == (entry.min_version, entry.max_version):
            kept.append(entry)
        elif lo <= hi:
            kept.append(dataclasses.replace(entry, min_version=lo, max_version=hi))
    if len(kept) == len(response.api_keys) and all(a is b for a, b in zip(kept, response.api_keys, strict=True)):
        return response
    return dataclasses.replace(response, api_keys=tuple(kept))


def api_versions_error(frame: bytes, offset: int) -> int:
    """The error code of an ApiVersions response (an UNSUPPORTED_VERSION answer is always v0)."""
    code, _ = read_int16(frame, offset)
    return int(code)


def first_error(entity: Any) -> ErrorCode | None:
    """The first error code other than NONE anywhere in an entity."""
    cls: Schema = type(entity)
    have = fields(cls)
    for name in ERROR_FIELDS:
        if name in have and (code := getattr(entity, name)):
            return ErrorCode(code)
    for f in _nested(cls, _has_errors):
        value = getattr(entity, f.name)
        for item in (value or ()) if f.array else (value,):
            if item is not None and (found := first_error(item)) is not None:
                return found
    return None


def metadata_ids(response: Any) -> dict[UUID, str]:
    """topic id -> name, from a Metadata response (v10+ carry ids)."""
    out = {}
    for topic in response.topics:
        tid = getattr(topic, "topic_id", None)
        if tid is not None and tid.int and topic.name:
            out[tid] = topic.name
    return out


def metadata_errors(response: Any, errors: Mapping[str | None, tuple[ErrorCode, str | None]]) -> Any:
    """A Metadata response with the error code of `errors[name]` on each topic so named;
    `errors[None]` goes on every topic."""
    every = errors.get(None)
    topics = []
    for topic in response.topics:
        err = errors.get(topic.name, every)
        topics.append(topic if err is None else dataclasses.replace(topic, error_code=err[0]))
    return dataclasses.replace(response, topics=tuple(topics))
