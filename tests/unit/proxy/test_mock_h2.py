"""h2c mocks served by a real hub, driven by httpx (HTTP/2 with prior knowledge) and, where the
frames matter (resets, protocol errors), by the h2 library over a raw socket."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
import pytest

import faultbox.proxy.mock_h2
from faultbox.model.mock import (
    MAX_BODY,
    Dynamic,
    MockConfig,
    MockResponse,
    MockRoute,
    decode_json,
    json_body,
    parse_route,
)
from faultbox.proxy.hub import ProxyHub
from faultbox.proxy.mock import MockServer
from faultbox.proxy.session import Endpoint
from support import wait_until

TIMEOUT = 10.0
JSON = (("content-type", "application/json"),)
BIG = bytes(range(256)) * 4096  # 1 MiB: sixteen times the default HTTP/2 window


def _route(pattern: str, answer: MockResponse | Dynamic) -> MockRoute:
    return MockRoute(parse_route(pattern), answer)


@dataclass
class Mock:
    """A mock server on the hub, the `mock` events it emitted and the requests its handlers got."""

    server: MockServer
    events: list[dict[str, str]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # what the "slow" handler waits for

    @property
    def url(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    def event(self, path: str) -> dict[str, str]:
        found = [e for e in list(self.events) if e["path"] == path]
        assert len(found) == 1, f"{len(found)} events for {path}: {self.events}"
        return found[0]


HANDLERS = {1: "echo", 2: "boom", 3: "slow"}


async def _handle(mock: Mock, handler: int, req: dict[str, Any]) -> tuple[str, Any]:
    mock.calls.append(req)
    name = HANDLERS[handler]
    if name == "boom":
        return "error", "boom: order service exploded"
    if name == "slow":
        await mock.gate.wait()
        return "ok", MockResponse(200, b"slow done")
    data = decode_json(req["body"])  # as the runner does before calling a spec's handler
    summary = {
        "method": req["method"],
        "path": req["path"],
        "query": req["query"],
        "content_type": req["headers"].get("content-type"),
        "size": len(req["body"]),
        "id": data.get("id") if isinstance(data, dict) else None,
    }
    return "ok", MockResponse(201, json_body(summary), (*JSON, ("x-handled-by", "echo")))


CONFIG = MockConfig(
    "http",
    routes=(
        _route("GET /v1/health", MockResponse(200, json_body({"ok": True}), JSON)),
        _route("GET /v1/orders/*", MockResponse(200, b"any order", (("content-type", "text/plain"),))),
        _route("GET /v1/orders/special", MockResponse(200, b"special order", (("content-type", "text/plain"),))),
        _route("* /big", MockResponse(200, BIG, (("content-type", "application/octet-stream"),))),
        _route("GET /empty", MockResponse(204, b"", (("connection", "close"), ("x-empty", "yes")))),
        _route("* /echo/**", Dynamic(1, "echo")),
        _route("POST /boom", Dynamic(2, "boom")),
        _route("GET /slow", Dynamic(3, "slow")),
    ),
)


@pytest.fixture
def mock(hub: ProxyHub) -> Iterator[Mock]:
    holder: list[Mock] = []

    def emit(type: str, fields: dict[str, str]) -> None:
        assert type == "mock"
        holder[0].events.append(fields)

    async def call(handler: int, req: dict[str, Any]) -> tuple[str, Any]:
        return await _handle(holder[0], handler, req)

    server = hub.open_mock(Endpoint("pay", "main", "http", "127.0.0.1", 0), CONFIG, emit, call)
    holder.append(Mock(server))
    yield holder[0]
    hub.loop.call_soon_threadsafe(holder[0].gate.set)
    hub.call(server.stop())


def _h2() -> httpx.Client:
    return httpx.Client(http1=False, http2=True, timeout=TIMEOUT)


def test_static_json_route_is_answered_and_recorded(mock: Mock) -> None:
    with _h2() as client:
        r = client.get(f"{mock.url}/v1/health?verbose=1&x=2", headers={"X-Trace-Id": "t-1"})
    assert r.http_version == "HTTP/2"
    assert r.status_code == 200
    assert r.json() == {"ok": True}
    assert r.headers["content-type"] == "application/json"
    assert r.headers["content-length"] == str(len(r.content))
    ev = mock.event("/v1/health")
    assert ev["op"] == "GET /v1/health"
    assert (ev["method"], ev["status"], ev["route"]) == ("GET", "200", "GET /v1/health")
    assert (ev["interface"], ev["protocol"], ev["kind"]) == ("main", "http", "mock")
    assert ev["query"] == "verbose=1&x=2"
    assert ev["req_x_trace_id"] == "t-1"
    assert ev["req_host"] == f"{mock.server.host}:{mock.server.port}", "the :authority, as HTTP/1.1's Host"
    assert not any(key.startswith("req_:") for key in ev), "pseudo-headers are not request headers"


def test_the_most_specific_route_answers_and_no_route_is_404(mock: Mock) -> None:
    with _h2() as client:
        special = client.get(f"{mock.url}/v1/orders/special")
        other = client.get(f"{mock.url}/v1/orders/7")
        deeper = client.get(f"{mock.url}/v1/orders/7/items")
        missing = client.post(f"{mock.url}/nowhere", content=b"x")
    assert (special.status_code, special.text) == (200, "special order")
    assert (other.status_code, other.text) == (200, "any order")
    assert deeper.status_code == 404
    assert (missing.status_code, missing.text) == (404, "not found\n")
    assert mock.event("/v1/orders/special")["route"] == "GET /v1/orders/special"
    assert mock.event("/v1/orders/7")["route"] == "GET /v1/orders/*"
    ev = mock.event("/nowhere")
    assert (ev["status"], ev["route"], ev["method"]) == ("404", "", "POST")


def test_a_posted_body_reaches_the_dynamic_handler(mock: Mock) -> None:
    payload = {"id": "ord-9", "note": "n" * (MAX_BODY - 100)}  # more than the default 64 KiB window
    with _h2() as client:
        r = client.post(f"{mock.url}/echo/orders?dry=1", json=payload)
    assert r.status_code == 201, r.text
    assert r.headers["x-handled-by"] == "echo"
    got = r.json()
    assert got["method"] == "POST" and got["path"] == "/echo/orders" and got["query"] == {"dry": "1"}
    assert got["content_type"] == "application/json"
    assert got["id"] == "ord-9"
    ev = mock.event("/echo/orders")
    assert ev["status"] == "201" and ev["route"] == "* /echo/**"
    assert got["size"] == int(ev["req_size"]) > 1 << 16
    assert "dynamic_error" not in ev


def test_a_body_too_big_for_a_handler_is_413_and_a_big_body_to_a_fixed_answer_is_read_whole(mock: Mock) -> None:
    with _h2() as client:
        too_big = client.post(f"{mock.url}/echo/orders", content=b"x" * (MAX_BODY + 1))
        fixed = client.post(f"{mock.url}/big", content=b"y" * (3 << 20))  # three 1 MiB stream windows
    assert too_big.status_code == 413 and not mock.calls
    assert "dynamic_error" in mock.event("/echo/orders")
    assert fixed.status_code == 200 and mock.event("/big")["req_size"] == str(3 << 20)


def test_a_failing_dynamic_handler_answers_500(mock: Mock) -> None:
    with _h2() as client:
        r = client.post(f"{mock.url}/boom", json={"amount": 5})
    assert r.status_code == 500
    assert r.json()["detail"] == "boom: order service exploded"
    ev = mock.event("/boom")
    assert ev["status"] == "500"
    assert ev["dynamic_error"] == "boom: order service exploded"
    assert mock.calls and json.loads(mock.calls[0]["body"]) == {"amount": 5}


def test_many_concurrent_streams_share_one_connection(mock: Mock) -> None:
    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(http1=False, http2=True, timeout=TIMEOUT) as client:
            static = [client.get(f"{mock.url}/v1/orders/{i}") for i in range(150)]
            dynamic = [client.put(f"{mock.url}/echo/n/{i}", json={"id": i}) for i in range(50)]
            big = [client.get(f"{mock.url}/big") for _ in range(4)]
            return list(await asyncio.gather(*static, *dynamic, *big))

    responses = asyncio.run(go())
    assert [r.status_code for r in responses] == [200] * 150 + [201] * 50 + [200] * 4
    assert all(r.text == "any order" for r in responses[:150])
    assert [r.json()["id"] for r in responses[150:200]] == list(range(50))
    assert all(r.content == BIG for r in responses[200:])
    assert len(mock.events) == 204
    assert {e["conn_id"] for e in mock.events} == {mock.events[0]["conn_id"]}


def test_a_body_larger_than_the_window_arrives_whole(mock: Mock) -> None:
    with _h2() as client:
        r = client.get(f"{mock.url}/big")
        again = client.get(f"{mock.url}/big")
    assert r.status_code == 200 and r.content == BIG and again.content == BIG
    assert r.headers["content-length"] == str(len(BIG))
    assert mock.events[0]["body_size"] == str(len(BIG))


def test_head_and_204_carry_no_body(mock: Mock) -> None:
    with _h2() as client:
        head = client.head(f"{mock.url}/big")
        empty = client.get(f"{mock.url}/empty")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(BIG)), "HEAD tells the size GET would send"
    assert empty.status_code == 204 and empty.content == b""
    assert empty.headers["x-empty"] == "yes"
    assert "connection" not in empty.headers and "content-length" not in empty.headers
    assert [e["method"] for e in mock.events] == ["HEAD", "GET"]


def test_a_slow_handler_does_not_hold_up_other_streams(mock: Mock, hub: ProxyHub) -> None:
    async def go() -> None:
        # One task per stream: httpx's blocking client lets a thread waiting on one stream starve the others.
        async with httpx.AsyncClient(http1=False, http2=True, timeout=TIMEOUT) as client:
            slow = asyncio.ensure_future(client.get(f"{mock.url}/slow"))
            while not mock.calls:
                await asyncio.sleep(0.005)
            fast = await client.get(f"{mock.url}/v1/orders/special")
            assert fast.text == "special order"
            assert not slow.done() and [e["path"] for e in mock.events] == ["/v1/orders/special"]
            hub.loop.call_soon_threadsafe(mock.gate.set)
            assert (await slow).text == "slow done"

    asyncio.run(asyncio.wait_for(go(), TIMEOUT))
    assert [e["path"] for e in mock.events] == ["/v1/orders/special", "/slow"]
    assert mock.events[0]["conn_id"] == mock.events[1]["conn_id"]


def test_http1_still_works_on_the_same_port(mock: Mock) -> None:
    with httpx.Client(timeout=TIMEOUT) as client:
        r = client.get(f"{mock.url}/v1/orders/special")
    with _h2() as client:
        r2 = client.get(f"{mock.url}/v1/orders/special")
    assert r.http_version == "HTTP/1.1" and r.text == "special order"
    assert r2.http_version == "HTTP/2" and r2.text == "special order"
    assert [e["path"] for e in mock.events] == ["/v1/orders/special"] * 2
    assert mock.events[0]["conn_id"] != mock.events[1]["conn_id"]


# -- frames by hand ----------------------------------------------------------------------------


class RawClient:
    """An h2 client over a blocking socket, for what httpx does not do on demand."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.closed = False
        self.writing = True
        self.send()

    def send(self) -> None:
        out = self.conn.data_to_send()
        if self.writing:
            self.sock.sendall(out)

    def shutdown_write(self) -> None:
        self.writing = False
        self.sock.shutdown(socket.SHUT_WR)

    def request(self, method: str, path: str, end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "mock")]
        self.conn.send_headers(sid, [(k.encode(), v.encode()) for k, v in headers], end_stream=end)
        self.send()
        return sid

    def read_until(self, cond: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                return
            for ev in self.conn.receive_data(data):
                self.events.append(ev)
                if isinstance(ev, h2.events.DataReceived) and ev.flow_controlled_length:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            self.send()

    def ended(self, sid: int) -> bool:
        return any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in self.events)

    def status(self, sid: int) -> str:
        for e in self.events:
            if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
                return dict(e.headers)[b":status"].decode()
        return ""

    def reset_code(self, sid: int) -> int | None:
        for e in self.events:
            if isinstance(e, h2.events.StreamReset) and e.stream_id == sid:
                return int(e.error_code)
        return None

    def body(self, sid: int) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, h2.events.DataReceived) and e.stream_id == sid)

    def close(self) -> None:
        self.sock.close()


def test_a_stream_reset_by_the_client_is_still_answered_and_recorded(mock: Mock, hub: ProxyHub) -> None:
    client = RawClient(mock.server.port)
    try:
        slow = client.request("GET", "/slow")
        wait_until(lambda: len(mock.calls) == 1, "the slow handler to be called")
        client.conn.reset_stream(slow, h2.errors.ErrorCodes.CANCEL)
        client.send()
        # The handler was called: it runs to its end and its request is in the trace, as the
        # system's request was handled although its client gave up. The next one waits for it.
        echo = client.request("GET", "/echo/after")
        hub.loop.call_soon_threadsafe(mock.gate.set)
        client.read_until(lambda: client.ended(echo), "the answer after the reset")
        assert json.loads(client.body(echo))["path"] == "/echo/after"
    finally:
        client.close()
    assert not client.ended(slow) and client.body(slow) == b""
    assert [(e["path"], e["status"]) for e in mock.events] == [("/slow", "200"), ("/echo/after", "201")]


def test_a_request_running_when_the_connection_is_lost_is_still_recorded(mock: Mock, hub: ProxyHub) -> None:
    client = RawClient(mock.server.port)
    client.request("GET", "/slow")
    wait_until(lambda: len(mock.calls) == 1, "the slow handler to be called")
    client.close()
    hub.loop.call_soon_threadsafe(mock.gate.set)
    with _h2() as http:
        r = http.get(f"{mock.url}/echo/next")
    assert r.status_code == 201
    assert [e["path"] for e in mock.events] == ["/slow", "/echo/next"]


def test_a_protocol_error_ends_the_connection_with_goaway(mock: Mock) -> None:
    client = RawClient(mock.server.port)
    try:
        client.read_until(lambda: bool(client.events), "the server's settings")
        # A DATA frame on stream 1, which was never opened: a connection error.
        client.sock.sendall(b"\x00\x00\x01\x00\x00\x00\x00\x00\x01x")
        client.read_until(lambda: client.closed, "the connection to close")
    finally:
        client.close()
    goaway = [e for e in client.events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway and goaway[0].error_code != 0
    with _h2() as http:
        assert http.get(f"{mock.url}/v1/health").status_code == 200, "the mock keeps serving"


def test_answers_being_computed_still_go_out_after_the_client_half_closes(mock: Mock, hub: ProxyHub) -> None:
    client = RawClient(mock.server.port)
    try:
        slow = client.request("GET", "/slow")
        wait_until(lambda: len(mock.calls) == 1, "the slow handler to be called")
        client.shutdown_write()
        hub.loop.call_soon_threadsafe(mock.gate.set)
        client.read_until(lambda: client.closed, "the answer, then the close")
    finally:
        client.close()
    assert client.status(slow) == "200" and client.body(slow) == b"slow done"


def test_a_body_over_the_limit_is_refused_with_413(mock: Mock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faultbox.proxy.mock_h2, "_MAX_BODY", 100_000)
    client = RawClient(mock.server.port)
    try:
        sid = client.request("POST", "/echo/upload", end=False)
        client.read_until(lambda: client.conn.local_flow_control_window(sid) > 200_000, "the mock's windows")
        for _ in range(7):
            client.conn.send_data(sid, b"x" * 16_384)
            client.send()
        client.read_until(lambda: client.reset_code(sid) is not None, "the early answer and its reset")
        # The connection serves on: the refused body did not use up its window.
        ok = client.request("GET", "/v1/health")
        client.read_until(lambda: client.ended(ok), "the next answer")
    finally:
        client.close()
    assert client.status(sid) == "413" and client.ended(sid)
    assert client.reset_code(sid) == h2.errors.ErrorCodes.NO_ERROR
    assert client.status(ok) == "200"
    assert not mock.calls and [e["path"] for e in mock.events] == ["/v1/health"]
