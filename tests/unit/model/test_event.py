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
