"""Redis steps through the front door: a spec declares `redis(...)` from the stdlib (a real
redis-server started by the runner), its tests call `cache.main.<method>`, and the run's results are
checked here. One spec, run once for the module: each of its tests gets a fresh server anyway."""

from __future__ import annotations

import pytest

from faultbox.model.result import RunResult
from support import assert_passed, find_test, free_port, run_spec_text

SPEC = """
load("@faultbox/services.star", "redis")

def seed_cache():
    assert_eq(cache.main.set(key = "seeded", value = "yes").value, "OK")

cache = redis("cache", seed = seed_cache)
locked = redis("locked", password = "s3cr:t/pw")

# proxy = False: through a proxy, a refused connection is seen as one reset after connecting.
ghost = service("ghost", "python3", interface("main", "redis", REFUSED_PORT, proxy = False),
    args = ["-c", "import time; time.sleep(60)"])
# Accepts connections (the kernel does, from its backlog) and never answers.
LISTEN_SILENTLY = ("import socket, time; s = socket.socket(); s.bind(('127.0.0.1', SILENT_PORT)); " +
    "s.listen(); time.sleep(60)")
silent = service("silent", "python3", interface("main", "redis", SILENT_PORT),
    args = ["-c", LISTEN_SILENTLY], healthcheck = tcp("127.0.0.1:SILENT_PORT"))

def test_seed_ran():
    assert_eq(cache.main.get(key = "seeded").value, "yes")

def test_get_set_delete():
    assert_eq(cache.main.get(key = "k").value, None)
    assert_eq(cache.main.get(key = "k").body, '{"value":null}')
    s = cache.main.set(key = "k", value = "v1")
    assert_true(s.ok, s.error)
    assert_eq(s.value, "OK")
    assert_eq(cache.main.get(key = "k").value, "v1")
    assert_eq(cache.main.get(key = "k").body, '{"value":"v1"}')
    assert_eq(cache.main.set(key = "n", value = 42).value, "OK")
    assert_eq(cache.main.get(key = "n").value, "42", "numbers are stored as their text")
    cache.main.set(key = "doc", value = {"id": 7, "tags": ["a"]})
    assert_eq(json.decode(cache.main.get(key = "doc").value), {"id": 7, "tags": ["a"]},
              "dicts are stored as JSON")
    assert_eq(cache.main.delete(key = "k").value, 1)
    assert_eq(cache.main.delete(key = "k").value, 0)
    assert_eq(cache.main.get(key = "k").value, None)

def test_set_with_expiry():
    assert_eq(cache.main.set(key = "session", value = "x", ex = 100).value, "OK")
    ttl = cache.main.command(args = ["TTL", "session"]).value
    assert_true(ttl > 90 and ttl <= 100, "ttl %d" % ttl)
    assert_eq(cache.main.command(args = ["TTL", "seeded"]).value, -1)

def test_keys_for_the_seed_page_expression():
    assert_eq(len(cache.main.keys(pattern="order:*").data), 0)
    for i in [3, 1, 2]:
        cache.main.set(key = "order:%d" % i, value = "pending")
    cache.main.set(key = "other", value = "x")
    assert_eq(len(cache.main.keys(pattern="order:*").data), 3)
    assert_eq(cache.main.keys(pattern = "order:*").value, ["order:1", "order:2", "order:3"], "sorted")
    assert_eq(cache.main.keys().value, ["order:1", "order:2", "order:3", "other", "seeded"])

def test_incr():
    assert_eq(cache.main.incr(key = "hits").value, 1)
    r = cache.main.incr(key = "hits")
    assert_eq(r.value, 2)
    assert_eq(type(r.value), "int")
    assert_eq(r.body, '{"value":2}')

def test_hashes():
    assert_eq(cache.main.hset(key = "user:1", field = "name", value = "ada").value, 1)
    assert_eq(cache.main.hset(key = "user:1", field = "name", value = "grace").value, 0, "updated, not added")
    assert_eq(cache.main.hget(key = "user:1", field = "name").value, "grace")
    assert_eq(cache.main.hget(key = "user:1", field = "missing").value, None)

def test_lists():
    assert_eq(cache.main.lpush(key = "q", value = "a").value, 1)
    assert_eq(cache.main.lpush(key = "q", value = "b").value, 2)
    assert_eq(cache.main.lpush(key = "q", value = 3).value, 3)
    assert_eq(cache.main.lrange(key = "q").value, ["3", "b", "a"])
    assert_eq(cache.main.lrange(key = "q", start = 0, stop = 0).value, ["3"])
    assert_eq(cache.main.lrange(key = "q", start = 1, stop = -1).value, ["b", "a"])
    assert_eq(cache.main.lrange(key = "empty").value, [])

def test_ping_and_command():
    p = cache.main.ping()
    assert_eq(p.value, "PONG")
    assert_eq(p.body, '{"value":"PONG"}')
    cache.main.hset(key = "h", field = "f", value = "v")
    assert_eq(cache.main.command(args = ["HGETALL", "h"]).value, ["f", "v"])
    assert_eq(cache.main.command(args = ["SET", "x", "1", "NX"]).value, "OK")
    assert_eq(cache.main.command(args = ["SET", "x", "2", "NX"]).value, None)
    assert_eq(cache.main.command(args = ["INCRBY", "x", 5]).value, 6)
    assert_eq(cache.main.command(args = ["EXISTS", "x", "nope"]).value, 1)

def test_the_reference_shape_and_names():
    # .data is {"value": reply} for every step, as the reference returns it; .value is the reply.
    assert_eq(cache.main.set(key = "k", value = "v").data, {"value": "OK"})
    assert_eq(cache.main.get(key = "k").data, {"value": "v"})
    assert_eq(cache.main.get(key = "k").data["value"], cache.main.get(key = "k").value)
    assert_eq(cache.main.get(key = "missing").data, {"value": None})
    assert_eq(cache.main.ping().data, {"value": "PONG"})
    assert_eq(cache.main.incr(key = "n").data, {"value": 1})
    keys = cache.main.keys(pattern = "k*")
    assert_eq(keys.data, {"value": ["k"]})
    assert_eq(keys.data["value"], ["k"])
    assert_eq(keys.data.get("value"), ["k"])
    # ...and the list itself, as the reference's docs and the seed page read it
    assert_eq(keys.data, ["k"])
    assert_eq(len(keys.data), 1)
    assert_eq([k for k in keys.data], ["k"])
    assert_eq(keys.body, '{"value":["k"]}')
    assert_eq(cache.main.del(key = "k").data, {"value": 1})
    assert_eq(cache.main.del(key = "k").data["value"], 0)
    assert_eq(cache.main.rpush(key = "q", value = "a").data, {"value": 1})
    assert_eq(cache.main.rpush(key = "q", value = "b").value, 2)
    assert_eq(cache.main.lpush(key = "q", value = "z").value, 3)
    assert_eq(cache.main.lrange(key = "q", start = "0", stop = "-1").data, {"value": ["z", "a", "b"]})
    assert_eq(cache.main.lrange(key = "q", start = "1").value, ["a", "b"])
    assert_eq(cache.main.command(cmd = "SET", args = ["c", "1"]).data, {"value": "OK"})
    assert_eq(cache.main.command(cmd = "GET", args = "c").data, {"value": "1"})
    assert_eq(cache.main.command(cmd = "DBSIZE").value, 4, "seeded, n, q, c")
    assert_eq(cache.main.command(args = ["GET", "c"]).value, "1")
    assert_eq(json.decode(cache.main.get(key = "c").body), {"value": "1"})
    failed = cache.main.incr(key = "q")
    assert_eq([failed.ok, failed.data, failed.value], [False, None, None])

def test_bytes_are_sent_as_they_are():
    cache.main.set(key = "b", value = bytes([104, 105]))
    assert_eq(cache.main.get(key = "b").value, "hi")
    cache.main.command(cmd = "SET", args = ["raw", b"\\xff"])
    assert_eq(cache.main.command(cmd = "STRLEN", args = "raw").value, 1)

def test_step_credentials_replace_the_service_ones():
    assert_eq(locked.main.ping().value, "PONG")
    wrong = locked.main.ping(password = "nope")
    assert_eq(wrong.ok, False)
    assert_true("WRONGPASS" in wrong.error or "invalid" in wrong.error, wrong.error)
    assert_eq(locked.main.ping(password = "s3cr:t/pw").value, "PONG")
    assert_eq(locked.main.ping(user = "default", password = "s3cr:t/pw").value, "PONG")
    assert_eq(locked.main.ping().value, "PONG", "a step without them uses the service's again")

def test_error_replies_are_ok_false():
    cache.main.lpush(key = "l", value = "a")
    r = cache.main.incr(key = "l")
    assert_eq(r.ok, False)
    assert_eq(r.error, "WRONGTYPE Operation against a key holding the wrong kind of value")
    assert_eq(r.value, None)
    unknown = cache.main.command(args = ["NOPE"])
    assert_eq(unknown.ok, False)
    assert_true(unknown.error.startswith("ERR unknown command 'NOPE'"), unknown.error)
    cache.main.set(key = "s", value = "text")
    assert_eq(cache.main.incr(key = "s").error, "ERR value is not an integer or out of range")
    assert_eq(cache.main.ping().value, "PONG", "an error reply leaves the connection usable")

def test_reconnects_after_the_server_closed_the_connection():
    # CLIENT KILL includes the caller's own connection: the server replies, then closes it.
    killed = cache.main.command(args = ["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no"])
    assert_true(killed.ok, killed.error)
    assert_true(killed.value >= 1)
    again = cache.main.get(key = "seeded")
    assert_true(again.ok, again.error)
    assert_eq(again.value, "yes")

def test_password_from_the_helper():
    assert_eq(locked.main.ping().value, "PONG")
    assert_eq(locked.main.set(key = "a", value = "b").value, "OK")

def test_read_timeout_is_ok_false():
    r = cache.main.command(args = ["BLPOP", "nothing", "5"], timeout = "300ms")
    assert_eq(r.ok, False)
    assert_true(r.error.startswith("timeout: "), r.error)
    assert_true(r.duration_ms < 600, "took %d ms" % r.duration_ms)
    assert_eq(cache.main.ping().value, "PONG", "the next step reconnects")

def get_with_short_timeout():
    return cache.main.get(key = "seeded", timeout = "300ms")

def test_held_back_reply_times_out():
    r = fault(cache, write = delay("1s"), run = get_with_short_timeout)
    assert_eq(r.ok, False)
    assert_true(r.error.startswith("timeout: "), r.error)
    assert_true(r.duration_ms < 500, "took %d ms" % r.duration_ms)
    assert_eq(cache.main.get(key = "seeded").value, "yes", "the late reply does not answer the next step")

def test_refused_server_is_ok_false():
    r = ghost.main.get(key = "k", timeout = "1s")
    assert_eq(r.ok, False)
    assert_true("Connection refused" in r.error, r.error)
    assert_true(r.duration_ms < 1000, "took %d ms" % r.duration_ms)

def test_silent_server_times_out_within_the_step_timeout():
    r = silent.main.ping(timeout = "500ms")
    assert_eq(r.ok, False)
    assert_true(r.error.startswith("timeout: "), r.error)
    assert_true(r.duration_ms < 700, "took %d ms" % r.duration_ms)
"""

EXPECTED = [
    "test_seed_ran",
    "test_get_set_delete",
    "test_set_with_expiry",
    "test_keys_for_the_seed_page_expression",
    "test_incr",
    "test_hashes",
    "test_lists",
    "test_ping_and_command",
    "test_the_reference_shape_and_names",
    "test_bytes_are_sent_as_they_are",
    "test_step_credentials_replace_the_service_ones",
    "test_error_replies_are_ok_false",
    "test_reconnects_after_the_server_closed_the_connection",
    "test_password_from_the_helper",
    "test_read_timeout_is_ok_false",
    "test_held_back_reply_times_out",
    "test_refused_server_is_ok_false",
    "test_silent_server_times_out_within_the_step_timeout",
]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    text = SPEC.replace("REFUSED_PORT", str(free_port())).replace("SILENT_PORT", str(free_port()))
    return run_spec_text(tmp_path_factory.mktemp("redis"), text)


def test_every_spec_test_ran(result: RunResult) -> None:
    assert sorted(t.name for t in result.tests) == sorted(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_spec(result: RunResult, name: str) -> None:
    assert_passed(find_test(result, name))
