"""HTTP/1.x and TCP line mocks served by a real hub, driven over raw sockets where the framing
matters (pipelining, chunked bodies, 100-continue, HEAD, close) and by httpx otherwise."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from faultbox.model.mock import Dynamic, MockConfig, MockResponse, MockRoute, parse_route
from faultbox.proxy.hub import ProxyHub
from faultbox.proxy.mock import MockServer
from faultbox.proxy.session import Endpoint
from support import wait_until

JSON = (("content-type", "application/json"),)


class Served:
    def __init__(self, hub: ProxyHub, config: MockConfig, handler: Callable[[int, dict[str, Any]], Any] | None = None):
        self.events: list[dict[str, str]] = []
        self.calls: list[dict[str, Any]] = []
        self.hub = hub

        async def call(handler_id: int, req: dict[str, Any]) -> tuple[str, Any]:
            self.calls.append(req)
            if handler is None:
                return ("error", "no handler")
            result = handler(handler_id, req)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        endpoint = Endpoint("pay", "main", config.protocol, "127.0.0.1", 0)
        self.server: MockServer = hub.open_mock(endpoint, config, lambda t, f: self.events.append(f), call)

    @property
    def addr(self) -> tuple[str, int]:
        return (self.server.host, self.server.port)

    def close(self) -> None:
        self.hub.call(self.server.stop())


def _config(*routes: tuple[str, MockResponse | Dynamic], default: MockResponse | None = None) -> MockConfig:
    return MockConfig("http", tuple(MockRoute(parse_route(p), a) for p, a in routes), default)


def _exchange(addr: tuple[str, int], data: bytes, until: Callable[[bytes], bool], timeout: float = 10.0) -> bytes:
    with socket.create_connection(addr, timeout=timeout) as sock:
        sock.sendall(data)
        got = b""
        deadline = time.monotonic() + timeout
        while not until(got):
            if time.monotonic() > deadline:
                raise AssertionError(f"no complete answer: {got!r}")
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_static_routes_keep_alive_and_events(hub: ProxyHub) -> None:
    served = Served(
        hub,
        _config(
            ("GET /health", MockResponse(200, b"ok", (("content-type", "text/plain"),))),
            ("POST /v1/charges", MockResponse(201, b'{"id":"ch_1"}', JSON)),
        ),
    )
    try:
        with httpx.Client(base_url=f"http://{served.addr[0]}:{served.addr[1]}") as client:
            assert client.get("/health").text == "ok"
            r = client.post("/v1/charges?x=1", json={"order_id": "o1"}, headers={"Idempotency-Key": "o1"})
            assert r.status_code == 201 and r.json() == {"id": "ch_1"}
            assert r.headers["content-type"] == "application/json"
            assert client.get("/nope").status_code == 404
        by_path = {e["path"]: e for e in served.events}
        charge = by_path["/v1/charges"]
        assert charge["op"] == "POST /v1/charges" and charge["status"] == "201" and charge["query"] == "x=1"
        assert charge["route"] == "POST /v1/charges" and charge["req_idempotency_key"] == "o1"
        assert json.loads(charge["body"]) == {"order_id": "o1"}
        assert by_path["/nope"]["status"] == "404" and by_path["/nope"]["route"] == ""
        assert len({e["conn_id"] for e in served.events}) == 1  # one keep-alive connection
    finally:
        served.close()


def test_pipelined_answers_keep_their_order_behind_a_slow_handler(hub: ProxyHub) -> None:
    async def slow(handler_id: int, req: dict[str, Any]) -> tuple[str, Any]:
        await asyncio.sleep(0.2)
        return ("ok", MockResponse(200, b"slow"))

    served = Served(hub, _config(("GET /slow", Dynamic(1, "slow")), ("GET /fast", MockResponse(200, b"fast"))), slow)
    try:
        request = b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
        got = _exchange(served.addr, request, lambda b: b.count(b"HTTP/1.1 200") == 2 and b.endswith(b"fast"))
        assert got.index(b"slow") < got.index(b"fast")
    finally:
        served.close()


def test_chunked_body_expect_continue_and_head(hub: ProxyHub) -> None:
    def echo(handler_id: int, req: dict[str, Any]) -> tuple[str, Any]:
        return ("ok", MockResponse(200, req["body"].encode()))

    served = Served(
        hub, _config(("POST /echo", Dynamic(1, "echo")), ("GET /big", MockResponse(200, b"x" * 1000))), echo
    )
    try:
        chunked = (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        got = _exchange(served.addr, chunked, lambda b: b.endswith(b"hello world"))
        assert b"content-length: 11" in got
        with socket.create_connection(served.addr, timeout=10) as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(b"hi")
            rest = b""
            while not rest.endswith(b"hi"):
                rest += sock.recv(100)
        head = _exchange(served.addr, b"HEAD /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", lambda b: False)
        assert head.startswith(b"HTTP/1.1 200") and b"content-length: 1000" in head and head.endswith(b"\r\n\r\n")
        assert b"connection: close" in head  # and the mock closed it: _exchange saw the end
    finally:
        served.close()


def test_garbage_is_answered_400_and_closed(hub: ProxyHub) -> None:
    served = Served(hub, _config(("GET /a", MockResponse(200, b"a"))))
    try:
        got = _exchange(served.addr, b"NOT HTTP AT ALL\r\n\r\n", lambda b: False)
        assert got.startswith(b"HTTP/1.1 400")
    finally:
        served.close()


def test_stopping_cuts_open_connections(hub: ProxyHub) -> None:
    served = Served(hub, _config(("GET /a", MockResponse(200, b"a"))))
    sock = socket.create_connection(served.addr, timeout=10)
    try:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(1000).startswith(b"HTTP/1.1 200")
        served.close()
        assert sock.recv(1000) == b""  # the kept-alive connection was closed by the stop
        with pytest.raises(OSError):
            socket.create_connection(served.addr, timeout=2).close()
    finally:
        sock.close()


def test_tcp_line_mock_answers_every_line_by_the_longest_prefix(hub: ProxyHub) -> None:
    def echo(handler_id: int, req: dict[str, Any]) -> tuple[str, Any]:
        return ("ok", MockResponse(0, ("ECHO " + req["line"] + "\n").encode(), kind="bytes"))

    config = MockConfig(
        "tcp",
        default=MockResponse(0, b"ERR unknown\n", kind="bytes"),
        line_routes=(
            (b"PING now", MockResponse(0, b"PONG NOW\n", kind="bytes")),
            (b"PING", MockResponse(0, b"PONG\n", kind="bytes")),
            (b"ECHO", Dynamic(1, "echo")),
        ),
    )
    served = Served(hub, config, echo)
    try:
        got = _exchange(served.addr, b"PING\nPING now\nECHO hi\nWHAT\n", lambda b: b.count(b"\n") == 4)
        assert got == b"PONG\nPONG NOW\nECHO ECHO hi\nERR unknown\n"
        assert [e["matched"] for e in served.events] == ["true", "true", "true", "false"]
        assert served.events[2]["line"] == "ECHO hi" and served.events[2]["route"] == "ECHO"
    finally:
        served.close()


def test_a_handler_whose_client_went_away_is_still_recorded(hub: ProxyHub) -> None:
    release = asyncio.Event()

    async def slow(handler_id: int, req: dict[str, Any]) -> tuple[str, Any]:
        await release.wait()
        return ("ok", MockResponse(201, b"charged"))

    served = Served(hub, _config(("POST /charge", Dynamic(1, "slow"))), slow)
    try:
        sock = socket.create_connection(served.addr, timeout=10)
        sock.sendall(b"POST /charge HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        wait_until(lambda: served.calls, "the handler to be called")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset: the client gave up
        hub.loop.call_soon_threadsafe(release.set)
        wait_until(lambda: served.events, "the handled request's event")
        assert served.events[0]["status"] == "201"
    finally:
        served.close()


def test_a_body_too_deeply_nested_to_decode_is_still_answered(hub: ProxyHub) -> None:
    def echo(handler_id: int, req: dict[str, Any]) -> tuple[str, Any]:
        return ("ok", MockResponse(200, b"fine"))

    served = Served(hub, _config(("POST /x", Dynamic(1, "echo")), ("POST /static", MockResponse(204))), echo)
    try:
        body = b"[" * 100_000
        head = f"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        assert _exchange(served.addr, head + body, lambda b: b.endswith(b"fine")).startswith(b"HTTP/1.1 200")
        assert [e["status"] for e in served.events] == ["200"]
    finally:
        served.close()
