"""`where=` lambdas with index hints return exactly what a full scan returns, and do not call the
lambda on events the hint rules out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultbox._util.hints import hint_for
from faultbox.model.event import Event
from faultbox.spec import load_spec
from faultbox.trace.log import TraceLog

SPEC = """
def make(order_id):
    return lambda e: e.type == "wal" and e.data.get("action") == "INSERT" and e.data.get("order_id") == order_id

def make_from_event(event):
    return lambda e: e.type == "wal" and e.data.get("order_id") == event["order_id"]

by_type = lambda e: e.type == "topic"
by_topic = lambda e: e.type == "topic" and e.data.get("topic") == "order-events"
partial = lambda e: e.type == "stdout" and int(e.get("n") or "0") > 3
native = lambda e: e.data.get("n") == "5"
by_attr = lambda e: e.service == "api" and e.status == "ok"
contradiction = lambda e: e.type == "wal" and e.type == "topic"
swapped = lambda e: "wal" == e["type"]
"""


@pytest.fixture(scope="module")
def lambdas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path: Path = tmp_path_factory.mktemp("hints") / "h.star"
    path.write_text(SPEC)
    return load_spec(str(path)).root.globals


event = st.one_of(
    st.builds(
        lambda action, oid: Event("wal", "db", {"action": action, "order_id": oid}),
        st.sampled_from(["INSERT", "UPDATE", "DELETE"]),
        st.sampled_from(["1", "2", "3"]),
    ),
    st.builds(
        lambda topic, oid: Event("topic", "bus", {"topic": topic, "order_id": oid}),
        st.sampled_from(["order-events", "other"]),
        st.sampled_from(["1", "2"]),
    ),
    st.builds(
        lambda n, svc: Event("stdout", svc, {"n": str(n), "status": "ok"}, {"n": n, "status": "ok"}),
        st.integers(0, 6),
        st.sampled_from(["api", "db"]),
    ),
    st.builds(lambda n: Event("stdout", "api", {"n": n}), st.sampled_from(["5", "7"])),
)


def fill(events: list[Event]) -> TraceLog:
    log = TraceLog()
    for e in events:
        log.append(Event(e.type, e.service, e.fields, e.data if e.has_native_data else None))
    return log


@settings(max_examples=60, deadline=None)
@given(st.lists(event, max_size=60))
def test_hinted_equals_full_scan(lambdas: dict[str, Any], events: list[Event]) -> None:
    log = fill(events)
    candidates = [
        lambdas["make"]("2"),
        lambdas["make_from_event"](Event("topic", "bus", {"order_id": "1"})),
        lambdas["by_type"],
        lambdas["by_topic"],
        lambdas["partial"],
        lambdas["native"],
        lambdas["by_attr"],
        lambdas["contradiction"],
        lambdas["swapped"],
    ]
    for where in candidates:
        assert log.select(None, where) == [e for e in log.events if where(e)]


def test_hints_are_recognised(lambdas: dict[str, Any]) -> None:
    made = hint_for(lambdas["make"]("2"))
    assert made is not None and made.complete and made.data_keys == {".action", ".order_id"}
    assert made.conditions(lambdas["make"]("2")) == ({"type": "wal", ".action": "INSERT", ".order_id": "2"}, True)
    from_event = lambdas["make_from_event"](Event("topic", "bus", {"order_id": "9"}))
    assert hint_for(from_event).conditions(from_event) == ({"type": "wal", ".order_id": "9"}, True)  # type: ignore[union-attr]
    missing = lambdas["make_from_event"](Event("topic", "bus", {}))
    assert hint_for(missing).conditions(missing) == ({"type": "wal"}, False)  # type: ignore[union-attr]
    partial = hint_for(lambdas["partial"])
    assert partial is not None and not partial.complete
    assert hint_for(lambdas["swapped"]).static == (("type", "wal"),)  # type: ignore[union-attr]


def test_complete_hint_does_not_call_the_lambda_on_candidates_without_native_data(lambdas: dict[str, Any]) -> None:
    log = TraceLog()
    for i in range(2000):
        log.append(Event("wal", "db", {"action": "INSERT", "order_id": str(i)}))
    calls = 0
    real = lambdas["make"]("1500")

    class Counting:
        __code__ = real.__code__
        __closure__ = real.__closure__
        __globals__ = real.__globals__

        def __call__(self, e: Event) -> Any:
            nonlocal calls
            calls += 1
            return real(e)

    got = log.select(None, Counting())
    assert [e.fields["order_id"] for e in got] == ["1500"]
    assert calls == 0
