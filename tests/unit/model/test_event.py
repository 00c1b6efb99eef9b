"""DECISIONS §4: one way to read an event, everywhere."""

from __future__ import annotations

import pytest

from faultbox._util.frozen import FrozenError
from faultbox.model.event import Event, FieldMissing, field_text
from faultbox.model.service import Decoder
from faultbox.sources.decoders import decode


def json_event(line: str) -> Event:
    fields, data = decode(line, Decoder("json"))
    return Event("stdout", "api", fields, data)


def test_string_fields_and_native_data() -> None:
    ev = json_event('{"status": "confirmed", "persisted": true, "stock": 5, "gone": null, "tags": [1, 2]}')
    assert ev["status"] == "confirmed"
    assert ev.get("persisted") == "true"  # the seed's event.get("persisted") != "true"
    assert ev["stock"] == "5" and int(ev["stock"]) == 5
    assert ev.data["stock"] == 5 and ev.data["persisted"] is True
    assert ev.get("gone") is None and ev.data["gone"] is None
    assert ev.tags == "[1,2]"
    assert ev.stock == "5"


def test_core_keys_win_over_fields() -> None:
    ev = json_event('{"type": "order", "service": "billing"}')
    assert ev["type"] == "stdout" and ev["service"] == "api"
    assert ev.fields["type"] == "order"


def test_missing_field() -> None:
    ev = Event("stdout", "api", {"a": "1"})
    assert ev.get("nope") is None
    assert ev.get("nope", "d") == "d"
    assert ev.nope is None
    with pytest.raises(FieldMissing, match=r'has no field "nope" \(its fields: a\)'):
        ev["nope"]


def test_data_without_native_values_is_the_string_view() -> None:
    ev = Event("wal", "db", {"action": "INSERT", "order_id": "42"})
    assert ev.data.get("order_id") == ev["order_id"] == "42"


def test_events_cannot_be_rewritten() -> None:
    ev = json_event('{"a": {"b": 1}}')
    with pytest.raises(FrozenError):
        ev.data["a"]["b"] = 2
    with pytest.raises(FrozenError):
        ev.fields["x"] = "y"


def test_field_text() -> None:
    assert field_text(True) == "true"
    assert field_text(4.5) == "4.5"
    assert field_text(None) is None
    assert field_text({"b": 1, "a": [2]}) == '{"a":[2],"b":1}'


def test_round_trip() -> None:
    ev = json_event('{"a": 1}')
    ev.seq = 3
    back = Event.from_dict(ev.to_dict())
    assert (back.seq, back.type, back.fields, back.data) == (3, "stdout", ev.fields, ev.data)


@pytest.mark.parametrize(
    ("kind", "pattern", "line", "expected"),
    [
        ("logfmt", "", 'level=info msg="order placed" id=7', {"level": "info", "msg": "order placed", "id": "7"}),
        ("regex", r"(?P<level>\w+): (?P<msg>.*)", "WARN: disk slow", {"level": "WARN", "msg": "disk slow"}),
        ("regex", r"(?P<level>\w+): (?P<msg>.*)", "no match here", {"raw": "no match here"}),
        ("json", "", "not json", {"raw": "not json"}),
        ("raw", "", "plain", {"raw": "plain"}),
    ],
)
def test_decoders(kind: str, pattern: str, line: str, expected: dict[str, str]) -> None:
    assert decode(line, Decoder(kind, pattern))[0] == expected


def test_event_type_is_the_reference_dotted_type() -> None:
    assert Event("syscall", "db", {"syscall": "write", "decision": "allow"}).event_type == "syscall.write"
    assert Event("service_started", "db", {"pid": "7"}).event_type == "lifecycle.started"
    assert Event("service_ready", "db", {}).event_type == "lifecycle.ready"
    assert Event("step_send", "api", {"target": "api", "method": "get"}).event_type == "step_send.api"
    assert Event("step_recv", "api", {"method": "get"}).event_type == "step_recv.api", "target defaults to the service"
    assert Event("mock", "pay", {"op": "POST /v1/charges"}).event_type == "mock.POST /v1/charges"
    assert Event("wal", "db", {"action": "INSERT"}).event_type == "wal"
    assert Event("service_exited", "db", {}).event_type == "service_exited"


def test_timestamp_is_rfc3339_in_utc() -> None:
    assert Event("wal", "db", {}, ts=1714557600.5).timestamp == "2024-05-01T10:00:00.5Z"
    assert Event("wal", "db", {}, ts=1714557600.0).timestamp == "2024-05-01T10:00:00Z"
    assert Event("wal", "db", {}, ts=1714557600.123456).timestamp == "2024-05-01T10:00:00.123456Z"
    assert Event("wal", "db", {}, ts=1714557600.5).ts == 1714557600.5


def test_decoded_fields_of_those_names_stay_readable() -> None:
    ev = json_event('{"timestamp": "yesterday", "event_type": "order"}')
    assert ev.timestamp.endswith("Z") and ev.event_type == "stdout"
    assert ev["timestamp"] == "yesterday" and ev.fields["event_type"] == "order"
    assert ev.get("timestamp") == "yesterday"
