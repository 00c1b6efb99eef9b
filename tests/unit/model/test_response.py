"""A step's response: `.data` in the reference's shape, `.value` in faultbox's."""

from __future__ import annotations

import pickle

import pytest

from faultbox._util.frozen import FrozenError
from faultbox.model.response import Response, ValueList, reference_value


def test_value_is_data_unless_given() -> None:
    assert Response(data={"a": 1}).value == {"a": 1}
    assert Response(data={"value": 2}, value=2).value == 2
    assert Response(data=None, value=None).value is None


def test_a_scalar_reply_is_wrapped() -> None:
    assert reference_value("OK") == {"value": "OK"}
    assert reference_value(None) == {"value": None}


def test_a_list_reply_reads_both_ways() -> None:
    data = reference_value(["a", "b"])
    assert isinstance(data, ValueList)
    assert data == ["a", "b"] and len(data) == 2 and data[0] == "a" and data[-1] == "b"
    assert data["value"] == ["a", "b"] and data.get("value") == ["a", "b"] and data.get("x") is None
    assert data == {"value": ["a", "b"]} and data != {"value": ["a"]} and data != {"other": ["a", "b"]}
    assert (data != ["a", "b"]) is False
    assert pickle.loads(pickle.dumps(data)) == data
    with pytest.raises(FrozenError):
        data.append("c")
