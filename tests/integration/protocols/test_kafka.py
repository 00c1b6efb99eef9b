"""Kafka steps through the front door: a spec declares `kafka(...)` from the stdlib (a real Tansu
broker started by the runner), its tests call `bus.main.publish/consume`, and the run's results are
checked here. One spec, run once for the module: each of its tests gets a fresh broker anyway."""

from __future__ import annotations

import pytest

from faultbox.model.result import RunResult
from support import assert_passed, find_test, free_port, run_spec_text

SPEC = """
load("@faultbox/services.star", "kafka")

bus = kafka("bus")

# proxy = False: through a proxy, a refused connection is seen as one reset after connecting.
ghost = service("ghost", "python3", interface("main", "kafka", REFUSED_PORT, proxy = False),
    args = ["-c", "import time; time.sleep(60)"])
# Accepts connections (the kernel does, from its backlog) and never answers.
LISTEN_SILENTLY = ("import socket, time; s = socket.socket(); s.bind(('127.0.0.1', SILENT_PORT)); " +
    "s.listen(); time.sleep(60)")
silent = service("silent", "python3", interface("main", "kafka", SILENT_PORT),
    args = ["-c", LISTEN_SILENTLY], healthcheck = tcp("127.0.0.1:SILENT_PORT"))

def test_publish_then_consume_without_a_group():
    p = bus.main.publish(topic = "orders", value = "first")
    assert_true(p.ok, p.error)
    assert_eq(p.value, {"published": True, "topic": "orders", "partition": 0, "offset": 0})
    assert_eq(json.decode(p.body)["offset"], 0)
    bus.main.publish(topic = "orders", value = "second", key = "k", headers = {"trace": "t-1"})
    c = bus.main.consume(topic = "orders", max = 10)
    assert_true(c.ok, c.error)
    assert_eq(len(c.value), 2)
    first = c.value[0]
    assert_eq(first["topic"], "orders")
    assert_eq(first["partition"], 0)
    assert_eq(first["offset"], 0)
    assert_eq(first["key"], None)
    assert_eq(first["value"], "first")
    assert_true("json" not in first, "a value that is not JSON has no json field")
    assert_eq(c.value[1]["key"], "k")
    assert_eq(c.value[1]["value"], "second")
    assert_eq(c.value[1]["headers"], {"trace": "t-1"})
    # Without a group nothing is committed: the next read starts from the beginning again.
    again = bus.main.consume(topic = "orders")
    assert_eq(len(again.value), 1, "max defaults to 1")
    assert_eq(again.value[0]["value"], "first")
    # ...and the broker never sees the test as a consumer of the system.
    assert_never(type = "topic", action = "consume")
    assert_eventually(type = "topic", action = "produce", topic = "orders", value = "first")

def test_publish_dict_value_is_json():
    p = bus.main.publish(topic = "events", value = {"order_id": "o-1", "qty": 2, "tags": ["a"]})
    assert_true(p.ok, p.error)
    c = bus.main.consume(topic = "events")
    msg = c.value[0]
    assert_eq(msg["value"], '{"order_id":"o-1","qty":2,"tags":["a"]}')
    assert_eq(msg["json"], {"order_id": "o-1", "qty": 2, "tags": ["a"]})
    assert_eq(msg["json"]["qty"], 2)
    # data= is the reference's name for the payload
    bus.main.publish(topic = "events", data = [1, 2])
    both = bus.main.consume(topic = "events", max = 5)
    assert_eq([m["json"] for m in both.value], [{"order_id": "o-1", "qty": 2, "tags": ["a"]}, [1, 2]])
    assert_eventually(type = "topic", action = "produce", topic = "events", order_id = "o-1")
    clash = bus.main.publish(topic = "events", value = "a", data = "b")
    assert_eq(clash.ok, False)
    assert_true("not both" in clash.error, clash.error)

def test_keyed_messages_keep_their_partition():
    a = bus.main.publish(topic = "keyed", value = "1", key = "customer-7")
    b = bus.main.publish(topic = "keyed", value = "2", key = "customer-7")
    assert_eq(a.value["partition"], b.value["partition"])
    assert_eq(b.value["offset"], a.value["offset"] + 1)

def test_consume_with_a_group_commits():
    for v in ["a", "b", "c"]:
        bus.main.publish(topic = "jobs", value = v)
    first = bus.main.consume(topic = "jobs", group = "workers", max = 2)
    assert_true(first.ok, first.error)
    assert_eq([m["value"] for m in first.value], ["a", "b"])
    # The commit is what the topic source reports as consumed by the group.
    assert_eventually(type = "topic", action = "consume", topic = "jobs", group = "workers", value = "b",
                      timeout = "3s")
    rest = bus.main.consume(topic = "jobs", group = "workers", max = 10, timeout = "2s")
    assert_eq([m["value"] for m in rest.value], ["c"], "the group continues where it stopped")
    idle = bus.main.consume(topic = "jobs", group = "workers", timeout = "300ms")
    assert_true(idle.ok, idle.error)
    assert_eq(idle.value, [])
    assert_eq(idle.data, None)

def test_the_reference_shapes():
    # publish: the reference's {"published": True, "topic": t}, with faultbox's partition and offset
    p = bus.main.publish(topic = "shapes", data = {"order_id": "o-9"}, key = "o-9")
    assert_true(p.ok, p.error)
    assert_eq(p.data["published"], True)
    assert_eq(p.data["topic"], "shapes")
    assert_eq(sorted(p.data.keys()), ["offset", "partition", "published", "topic"])
    assert_eq(p.value, p.data)
    assert_eq(json.decode(p.body)["published"], True)
    bus.main.publish(topic = "shapes", data = "second", key = "o-9")
    # consume: the reference reads one message and returns it as a dict
    c = bus.main.consume(topic = "shapes")
    assert_true(c.ok, c.error)
    assert_eq(c.data["topic"], "shapes")
    assert_eq(c.data["key"], "o-9")
    assert_eq(c.data["value"], '{"order_id":"o-9"}')
    assert_eq(c.data["partition"], p.data["partition"])
    assert_eq(c.data["offset"], p.data["offset"])
    assert_eq(c.data["json"]["order_id"], "o-9")
    assert_eq(json.decode(c.body)["key"], "o-9")
    assert_eq(c.value, [c.data], "faultbox's shape: every message returned, up to max=")
    both = bus.main.consume(topic = "shapes", max = 5)
    assert_eq([m["value"] for m in both.value], ['{"order_id":"o-9"}', "second"])
    assert_eq(both.data, both.value[0])
    g = bus.main.consume(topic = "shapes", group = "readers")
    assert_eq(g.data["value"], '{"order_id":"o-9"}')
    raw = bus.main.publish(topic = "shapes", value = bytes([0, 255]))
    assert_true(raw.ok, raw.error)
    last = bus.main.consume(topic = "shapes", max = 5).value[-1]
    assert_eq(last["value"], "\\x00\\\\xff", "bytes are sent as they are (0xff is not UTF-8: escaped)")

def test_consume_from_a_missing_topic_is_ok_false():
    r = bus.main.consume(topic = "never-created", timeout = "2s")
    assert_eq(r.ok, False)
    assert_true("does not exist" in r.error, r.error)
    assert_true(r.duration_ms < 1000, "took %d ms" % r.duration_ms)
    g = bus.main.consume(topic = "never-created", group = "g", timeout = "2s")
    assert_eq(g.ok, False)
    assert_true("does not exist" in g.error, g.error)
    # consume never creates it
    assert_eq(bus.main.consume(topic = "never-created", timeout = "1s").ok, False)

def test_consume_waits_for_the_first_message_then_returns_empty():
    bus.main.publish(topic = "quiet", value = "x")
    bus.main.consume(topic = "quiet", group = "g1")
    r = bus.main.consume(topic = "quiet", group = "g1", timeout = "500ms")
    assert_true(r.ok, r.error)
    assert_eq(r.value, [])
    assert_true(r.duration_ms >= 400, "waited %d ms" % r.duration_ms)

def test_refused_broker_is_ok_false():
    p = ghost.main.publish(topic = "t", value = "v", timeout = "2s")
    assert_eq(p.ok, False)
    assert_true("Connection refused" in p.error, p.error)
    assert_true(p.duration_ms < 2000, "took %d ms" % p.duration_ms)
    c = ghost.main.consume(topic = "t", timeout = "2s")
    assert_eq(c.ok, False)
    assert_true("Connection refused" in c.error, c.error)
    assert_true(c.duration_ms < 2000, "took %d ms" % c.duration_ms)

def test_silent_broker_times_out_within_the_step_timeout():
    p = silent.main.publish(topic = "t", value = "v", timeout = "800ms")
    assert_eq(p.ok, False)
    assert_true(p.error.startswith("timeout: "), p.error)
    assert_true(p.duration_ms < 1000, "took %d ms" % p.duration_ms)
    c = silent.main.consume(topic = "t", timeout = "800ms")
    assert_eq(c.ok, False)
    assert_true(c.error.startswith("timeout: "), c.error)
    assert_true(c.duration_ms < 1000, "took %d ms" % c.duration_ms)

def test_a_broker_too_slow_for_the_observer_is_reported():
    # Every reply of the broker is 6s late: the publish times out, and the topic observer cannot
    # read the high watermarks within its barrier (5s).
    r = fault(bus, sendto = delay("6s"),
        run = lambda: bus.main.publish(topic = "late", value = "v", timeout = "500ms"))
    assert_eq(r.ok, False)
    assert_eventually(type = "source_error", service = "bus")
"""

EXPECTED = [
    "test_publish_then_consume_without_a_group",
    "test_publish_dict_value_is_json",
    "test_keyed_messages_keep_their_partition",
    "test_consume_with_a_group_commits",
    "test_the_reference_shapes",
    "test_consume_from_a_missing_topic_is_ok_false",
    "test_consume_waits_for_the_first_message_then_returns_empty",
    "test_refused_broker_is_ok_false",
    "test_silent_broker_times_out_within_the_step_timeout",
    "test_a_broker_too_slow_for_the_observer_is_reported",
]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    text = SPEC.replace("REFUSED_PORT", str(free_port())).replace("SILENT_PORT", str(free_port()))
    return run_spec_text(tmp_path_factory.mktemp("kafka"), text)


def test_every_spec_test_ran(result: RunResult) -> None:
    assert sorted(t.name for t in result.tests) == sorted(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_spec(result: RunResult, name: str) -> None:
    assert_passed(find_test(result, name))


def test_a_lagging_source_is_a_warning_of_the_test(result: RunResult) -> None:
    slow = find_test(result, "test_a_broker_too_slow_for_the_observer_is_reported")
    lagged = [d for d in slow.diagnostics if d.code == "SOURCE_LAGGED"]
    assert len(lagged) == 1, slow.diagnostics
    assert lagged[0].service == "bus" and "could not catch up at" in lagged[0].message
    quick = find_test(result, "test_publish_then_consume_without_a_group")
    assert not [d for d in quick.diagnostics if d.code == "SOURCE_LAGGED"]
