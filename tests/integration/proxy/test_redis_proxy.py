"""The Redis proxy with redis-py against a real redis-server: relaying every reply type in RESP2 and
RESP3, pipelines, pub/sub, MONITOR, transactions, CLIENT REPLY, and each fault action.

Most tests install a rule that the traffic does not match, so the codec decodes every request
(the path a test run takes); the replies the proxy injects must reach the client in request order.
A raw socket stands in for redis-py only where redis-py cannot speak the feature (attributes,
CLIENT REPLY, inline commands) or the exact bytes on the wire are the point.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_py
from depserver import Server
from redis.backoff import NoBackoff
from redis.retry import Retry

from faultbox.deps import free_port
from faultbox.deps import redis as redis_deps
from faultbox.model.proxy import ProxyAction, ProxyFault

OTHER = ProxyFault(ProxyAction.ERROR, (("command", "NO-SUCH-COMMAND"),))  # decode, match nothing
READONLY = "READONLY You can't write against a read only replica."


def _fault(action: ProxyAction, command: str | None = None, key: str | None = None, **kw: Any) -> ProxyFault:
    matchers = tuple((k, v) for k, v in (("command", command), ("key", key)) if v is not None)
    return ProxyFault(action, matchers, **kw)


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    """One redis-server for the module, with DEBUG enabled: DEBUG PROTOCOL <type> answers each RESP type."""
    workdir = tempfile.mkdtemp(prefix="fb-redis-proxy-", dir="/tmp")
    plan = redis_deps.prepare(workdir, free_port(), appendonly=False)
    plan = dataclasses.replace(plan, argv=(*plan.argv, "--enable-debug-command", "yes"))
    srv = Server(plan).start()
    yield plan.port
    srv.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def direct(server: int) -> Iterator[redis_py.Redis]:
    client = _client(server)
    client.flushall()
    yield client
    client.close()


def _client(port: int, **kw: Any) -> redis_py.Redis:
    kw.setdefault("socket_timeout", 10)
    return redis_py.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0), **kw)


def _raw(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _read_until(sock: socket.socket, tail: bytes) -> bytes:
    """Read until what came ends with `tail` (bounded by the socket's timeout)."""
    data = b""
    while not data.endswith(tail):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def _wait_for(what: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_get_set_and_a_pipeline_of_1000(proxy_to, server, direct) -> None:
    p = proxy_to("redis", server)
    r = _client(p.port)
    assert r.set("k", "v") is True
    assert r.get("k") == b"v"

    def pipeline() -> list[Any]:
        pipe = r.pipeline(transaction=False)
        for i in range(500):
            pipe.set(f"n:{i}", i)
        for i in range(500):
            pipe.get(f"n:{i}")
        return pipe.execute()

    expected = [True] * 500 + [str(i).encode() for i in range(500)]
    assert pipeline() == expected  # nothing installed: counted, not decoded
    # Decoded, with request 750 answered by the proxy while the server still owes the ones before.
    p.install(_fault(ProxyAction.RESPOND, "GET", "n:250", body="injected"), OTHER)
    got = pipeline()
    assert got[750] == b"injected"
    assert got[:750] == expected[:750] and got[751:] == expected[751:]
    assert [(e["command"], e["key"]) for e in p.of("proxy")] == [("GET", "n:250")]
    assert p.listener.warnings == []


def test_an_injected_reply_waits_for_the_replies_ahead_of_it(proxy_to, server, direct) -> None:
    p = proxy_to("redis", server)
    p.install(_fault(ProxyAction.ERROR, "GET", "k", message=READONLY))
    pipe = _client(p.port).pipeline(transaction=False)
    pipe.blpop(["empty"], timeout=0.3)  # the server answers nil after 0.3 s
    pipe.get("k")
    pipe.ping()
    nil, err, pong = pipe.execute(raise_on_error=False)
    assert nil is None
    assert isinstance(err, redis_py.exceptions.ReadOnlyError)
    assert pong is True


DEBUG_TYPES = ["string", "integer", "double", "bignum", "null", "array", "set", "map", "verbatim", "true", "false"]


@pytest.mark.parametrize("protocol", [2, 3])
def test_every_reply_type_is_relayed_intact(proxy_to, server, direct, protocol: int) -> None:
    p = proxy_to("redis", server)
    p.install(_fault(ProxyAction.RESPOND, "ECHO", body="after"), OTHER)
    via, straight = _client(p.port, protocol=protocol), _client(server, protocol=protocol)
    types = DEBUG_TYPES + (["push"] if protocol == 3 else [])
    pipe = via.pipeline(transaction=False)
    for t in types:
        pipe.execute_command("DEBUG", "PROTOCOL", t)
        pipe.echo("before")  # answered by the proxy: only in order if the reply above was framed right
    got = pipe.execute()
    for i, t in enumerate(types):
        assert got[2 * i] == straight.execute_command("DEBUG", "PROTOCOL", t), t
        assert got[2 * i + 1] == b"after", t
    via.hset("h", mapping={"a": "1", "b": "2"})
    assert via.hgetall("h") == {b"a": b"1", b"b": b"2"}  # a map (%) in RESP3


def test_a_resp3_attribute_is_relayed_with_the_value_it_annotates(proxy_to, server) -> None:
    """redis-py cannot read attributes (|), so a raw socket: the bytes must be the server's."""
    p = proxy_to("redis", server)
    p.install(_fault(ProxyAction.RESPOND, "ECHO", body="after"), OTHER)
    ask = b"HELLO 3\r\nDEBUG PROTOCOL attrib\r\n"
    with _raw(server) as s:
        s.sendall(ask)
        want = _read_until(s, b"attribute\r\n")
        want = want[want.index(b"|1\r\n") :]
    with _raw(p.port) as s:
        s.sendall(ask + b"ECHO x\r\n")
        got = _read_until(s, b"$5\r\nafter\r\n")
        assert got.endswith(want + b"$5\r\nafter\r\n")
        s.sendall(b"PING\r\n")
        assert _read_until(s, b"\r\n") == b"+PONG\r\n"


@pytest.mark.parametrize("protocol", [2, 3])
def test_pubsub_message_reaches_an_idle_subscriber(proxy_to, server, direct, protocol: int) -> None:
    p = proxy_to("redis", server)
    p.install(_fault(ProxyAction.ERROR, "GET", "*"), OTHER)
    sub = _client(p.port, protocol=protocol).pubsub()
    sub.subscribe("ch")
    sub.psubscribe("p*")
    assert _next(sub, "subscribe")["channel"] == b"ch"
    assert _next(sub, "psubscribe")["channel"] == b"p*"
    # The subscriber sends nothing now: the messages come unasked.
    threading.Timer(0.05, lambda: (direct.publish("ch", "one"), direct.publish("px", "two"))).start()
    assert _next(sub, "message")["data"] == b"one"
    assert _next(sub, "pmessage")["data"] == b"two"
    sub.unsubscribe("ch")
    assert _next(sub, "unsubscribe")["channel"] == b"ch"
    sub.close()
    assert p.listener.warnings == []


def _next(sub: Any, kind: str) -> dict[str, Any]:
    def get() -> dict[str, Any] | None:
        msg = sub.get_message(timeout=0.2)
        return msg if msg and msg["type"] == kind else None

    result: dict[str, Any] = _wait_for(get)
    return result


def test_monitor_feed_flows_and_replies_stay_in_order(proxy_to, server, direct) -> None:
    p = proxy_to("redis", server)
    p.install(_fault(ProxyAction.RESPOND, "ECHO", body="x"))
    with _client(p.port).monitor() as m:
        direct.set("mon:k", "1")
        command = _wait_for(lambda: (c := m.next_command()) and "mon:k" in c["command"] and c)
        assert command["command"] == "SET mon:k 1"
    # A monitoring client may still send commands; the server writes each reply before that
    # command's own monitor line. The feed answers no request: the injected reply comes after the
    # second PONG, not after the first monitor line.
    with _raw(p.port) as s:
        s.sendall(b"MONITOR\r\n")
        assert _read_until(s, b"+OK\r\n") == b"+OK\r\n"
        s.sendall(b"PING\r\nPING\r\nECHO y\r\n")
        got = b""
        while got.count(b'"PING"') < 2:  # both monitor lines
            chunk = s.recv(65536)
            assert chunk
            got += chunk
    lines = [b"feed" if line[:1] == b"+" and line[1:2].isdigit() else line for line in got.split(b"\r\n") if line]
    assert lines == [b"+PONG", b"feed", b"+PONG", b"$1", b"x", b"feed"]


def test_a_transaction_and_an_injected_error_inside_it(proxy_to, server, direct) -> None:
    p = proxy_to("redis", server)
    r = _client(p.port, single_connection_client=True)
    assert r.pipeline(transaction=True).set("tx:a", 1).incr("tx:n").execute() == [True, 1]

    p.install(_fault(ProxyAction.ERROR, "INCR*", "tx:b", message=READONLY))  # redis-py's incr() sends INCRBY
    with pytest.raises(redis_py.exceptions.ReadOnlyError):
        r.pipeline(transaction=True).set("tx:c", 1).incr("tx:b").execute()
    assert direct.exists("tx:c") == 0  # the server aborted the transaction too (EXECABORT)

    p.install(_fault(ProxyAction.RESPOND, "GET", "tx:g", body="fake"))
    got = r.pipeline(transaction=True).set("tx:g", "real").get("tx:g").incr("tx:n").execute()
    assert got == [True, b"fake", 2]
    assert direct.get("tx:g") == b"real"

    p.install(_fault(ProxyAction.ERROR, "EXEC", message="ERR exec refused"))
    with pytest.raises(redis_py.ResponseError, match="exec refused"):
        r.pipeline(transaction=True).set("tx:e", 1).execute()
    assert direct.exists("tx:e") == 0
    p.clear()
    assert r.set("tx:after", "1") is True  # the server is not still queueing
    assert direct.get("tx:after") == b"1"


def test_error_and_response_faults(proxy_to, server, direct) -> None:
    p = proxy_to("redis", server)
    p.install(
        _fault(ProxyAction.ERROR, "SET", "ro:*", message=READONLY),
        _fault(ProxyAction.ERROR, "INCRBY"),
        _fault(ProxyAction.RESPOND, "GET", "v", body="x"),
        _fault(ProxyAction.RESPOND, "GET", "nil", nil=True),
    )
    direct.set("nil", "present")
    r = _client(p.port)
    with pytest.raises(redis_py.exceptions.ReadOnlyError, match="read only replica"):
        r.set("ro:1", "x")
    assert direct.exists("ro:1") == 0  # the faulted command never reached the server
    with pytest.raises(redis_py.ResponseError, match="injected fault"):
        r.incr("counter")
    assert direct.exists("counter") == 0
    assert r.get("v") == b"x"
    assert r.get("nil") is None
    assert _client(p.port, protocol=3).get("nil") is None
    # On the wire: nil is $-1 in RESP2 and _ once the connection said HELLO 3; a value stays a bulk string.
    with _raw(p.port) as s:
        s.sendall(b"GET nil\r\nGET v\r\n")
        assert _read_until(s, b"$1\r\nx\r\n") == b"$-1\r\n$1\r\nx\r\n"
        s.sendall(b"HELLO 3\r\nGET nil\r\nGET v\r\n")
        assert _read_until(s, b"$1\r\nx\r\n").endswith(b"\r\n_\r\n$1\r\nx\r\n")
    fired = [(e["action"], e["command"], e.get("key")) for e in p.of("proxy")]
    assert fired[:4] == [
        ("error", "SET", "ro:1"),
        ("error", "INCRBY", "counter"),
        ("respond", "GET", "v"),
        ("respond", "GET", "nil"),
    ]


def test_delay_holds_the_request_and_those_behind_it(proxy_to, server, direct) -> None:
    p = proxy_to("redis", server)
    p.install(_fault(ProxyAction.DELAY, "GET", "slow", delay=0.3))
    pipe = _client(p.port).pipeline(transaction=False)
    pipe.incr("ahead").get("slow").set("behind", 1)
    start = time.monotonic()
    assert pipe.execute() == [1, None, True]
    assert time.monotonic() - start >= 0.3
    assert direct.get("ahead") == b"1"  # what came before the delayed request was sent once
    assert [(e["action"], e["delay_ms"]) for e in p.of("proxy")] == [("delay", "300")]


def test_drop_resets_the_connection(proxy_to, server, direct) -> None:
    p = proxy_to("redis", server)
    p.install(_fault(ProxyAction.DROP, "GET", "gone"))
    r = _client(p.port)
    with pytest.raises(redis_py.ConnectionError):
        r.get("gone")
    assert _client(p.port).get("other") is None  # other requests, other connections: fine
    assert [e["action"] for e in p.of("proxy")] == ["drop"]


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_key_rule_does_not_catch_the_handshake_with_auth(proxy_to, workdir, serve, protocol: int) -> None:
    plan = redis_deps.prepare(workdir, free_port(), password="s3cret", appendonly=False)
    serve(plan)
    p = proxy_to("redis", plan.port)
    p.install(_fault(ProxyAction.ERROR, key="*", message="ERR caught"), _fault(ProxyAction.DROP, key="*"))
    # AUTH (or HELLO ... AUTH), CLIENT SETNAME, CLIENT SETINFO and SELECT all carry no key.
    r = _client(p.port, password="s3cret", db=1, client_name="app", protocol=protocol)
    assert r.ping() is True
    assert r.publish("ch", "m") == 0
    with pytest.raises(redis_py.ResponseError, match="caught"):
        r.get("x")
    assert [(e["command"], e["key"]) for e in p.of("proxy")] == [("GET", "x")]
    with pytest.raises(redis_py.AuthenticationError):
        _client(p.port, password="wrong", protocol=protocol).ping()


def test_client_reply_off_and_skip(proxy_to, server, direct) -> None:
    """redis-py cannot turn replies off (it would wait for them), so a raw socket."""
    p = proxy_to("redis", server)
    p.install(_fault(ProxyAction.RESPOND, "GET", "*", body="x"))
    with _raw(p.port) as s:
        s.sendall(
            b"CLIENT REPLY OFF\r\nSET a 1\r\nGET a\r\nCLIENT REPLY ON\r\nGET b\r\n"
            b"CLIENT REPLY SKIP\r\nGET c\r\nSET d 1\r\nGET e\r\nPING\r\n"
        )
        assert _read_until(s, b"+PONG\r\n") == b"+OK\r\n$1\r\nx\r\n+OK\r\n$1\r\nx\r\n+PONG\r\n"
    assert direct.get("a") == b"1" and direct.get("d") == b"1"


def test_inline_commands_are_matched(proxy_to, server, direct) -> None:
    p = proxy_to("redis", server)
    p.install(_fault(ProxyAction.RESPOND, "GET", "inl", body="x"))
    with _raw(p.port) as s:
        s.sendall(b"SET inl 1\r\nGET inl\r\n\r\nget   inl\nEXISTS inl\r\n")
        assert _read_until(s, b":1\r\n") == b"+OK\r\n$1\r\nx\r\n$1\r\nx\r\n:1\r\n"


def test_large_values_stream_through(proxy_to, server, direct) -> None:
    p = proxy_to("redis", server)
    p.install(_fault(ProxyAction.RESPOND, "GET", "small", body="x"))
    big = b"\r\n$1\r\n" * 700_000  # 8.4 MB that looks like RESP inside
    pipe = _client(p.port).pipeline(transaction=False)
    assert pipe.set("big", big).get("big").get("small").execute() == [True, big, b"x"]
    assert direct.strlen("big") == len(big)


def test_recording_has_one_entry_per_request(proxy_to, server, direct) -> None:
    p = proxy_to("redis", server, record=True)
    p.install(_fault(ProxyAction.ERROR, "GET", "bad"))
    r = _client(p.port)
    r.set("rec", "1")
    r.get("rec")
    with pytest.raises(redis_py.ResponseError):
        r.get("bad")
    with pytest.raises(redis_py.ResponseError):
        r.hget("rec", "f")  # WRONGTYPE from the server
    rows = [(e["method"], e.get("key"), e["status"]) for e in p.of("proxy_request") if e.get("key")]
    assert rows == [("SET", "rec", "ok"), ("GET", "rec", "ok"), ("GET", "bad", "error"), ("HGET", "rec", "error")]
    assert all(float(e["duration_ms"]) >= 0 for e in p.of("proxy_request"))


@pytest.mark.parametrize("garbage", [b"*1\r\n:1\r\n", b"*x\r\n"])
def test_a_stream_that_is_not_resp_is_relayed_after_one_warning(proxy_to, server, garbage: bytes) -> None:
    p = proxy_to("redis", server)
    p.install(OTHER)
    with _raw(p.port) as s:
        s.sendall(b"PING\r\n" + garbage)
        reply = b""
        while chunk := s.recv(65536):  # Redis answers, then closes the connection
            reply += chunk
    assert reply.startswith(b"+PONG\r\n-ERR Protocol error")  # Redis's own answer, relayed
    assert len(p.listener.warnings) == 1 and "not RESP" in p.listener.warnings[0]


def test_leaving_resp2_subscribed_mode_counts_replies_again(proxy_to, server, direct) -> None:
    """After the last UNSUBSCRIBE, an array that looks like a pub/sub message is a reply again: the
    injected reply behind it must come right after it (raw socket: redis-py keeps a pub/sub
    connection for pub/sub)."""
    p = proxy_to("redis", server)
    p.install(_fault(ProxyAction.RESPOND, "GET", "k", body="x"))
    direct.rpush("l", "message", "ch", "hi")
    with _raw(p.port) as s:
        s.sendall(b"SUBSCRIBE ch\r\nPING\r\n")
        assert _read_until(s, b"$4\r\npong\r\n$0\r\n\r\n").endswith(b":1\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n")
        direct.publish("ch", "hi")
        message = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
        assert _read_until(s, message) == message
        s.sendall(b"UNSUBSCRIBE\r\nLRANGE l 0 -1\r\nGET k\r\n")
        got = _read_until(s, b"$1\r\nx\r\n")
        assert got == b"*3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n" + message + b"$1\r\nx\r\n"
