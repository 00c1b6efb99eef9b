"""The HTTP proxy against real servers: Python's ThreadingHTTPServer (HTTP/1.1) and hypercorn (h2c),
driven by httpx, raw sockets where the exact bytes matter, and the h2 library for trailers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from faultbox.deps.base import free_port
from faultbox.model.proxy import ProxyAction, ProxyFault

TIMEOUT = 10.0


def _until(cond: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _fault(action: ProxyAction, **kw: Any) -> ProxyFault:
    matchers = tuple((k, kw.pop(k)) for k in ("method", "path") if k in kw)
    return ProxyFault(action, matchers, **kw)


# -- the HTTP/1.1 server -----------------------------------------------------------------------


class _State:
    def __init__(self) -> None:
        self.hits: list[tuple[str, str, int, float]] = []  # method, path, client port, arrival
        self.gates: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def gate(self, name: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(name, threading.Event())

    def paths(self) -> list[str]:
        return [h[1] for h in self.hits]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: _State

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def _route(self) -> None:
        path = self.path.split("?", 1)[0]
        self.state.hits.append((self.command, self.path, self.client_address[1], time.monotonic()))
        if path == "/upload-gate":
            n = int(self.headers["Content-Length"])
            first = self.rfile.read(n // 2)
            self.state.gate("upload-half").set()
            rest = self.rfile.read(n - len(first))
            self._reply(200, str(len(first) + len(rest)).encode())
            return
        body = self._read_body() if self.command in ("POST", "PUT") else b""
        if path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Parts")
            self.end_headers()
            for part in (b"alpha-", b"beta-", b"gamma"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\nX-Parts: 3\r\n\r\n")
        elif path == "/big":
            n = int(self.path.split("n=", 1)[1])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            self.wfile.write(_pattern(n // 2))
            self.wfile.flush()
            # The rest only once the client has seen the first half through the proxy.
            if self.state.gate("big-half").wait(TIMEOUT):
                self.wfile.write(_pattern(n)[n // 2 :])
        elif path == "/slow":
            self.state.gate("slow").wait(TIMEOUT)
            self._reply(200, b"slow")
        elif path == "/eof":  # a body that ends when the connection does
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the end")
            self.close_connection = True
        elif path == "/nocontent":
            self._reply(204, b"")
        elif path == "/notmod":
            self._reply(304, b"", (("ETag", '"v1"'),))
        elif path == "/ws" and self.headers.get("Upgrade"):
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while data := self.connection.recv(65536):
                self.connection.sendall(b"ECHO:" + data)
            self.close_connection = True
        else:
            info = {
                "method": self.command,
                "path": self.path,
                "len": len(body),
                "sha": hashlib.sha256(body).hexdigest(),
                "port": self.client_address[1],
            }
            self._reply(200, json.dumps(info).encode(), (("Content-Type", "application/json"),))

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _route


def _pattern(n: int) -> bytes:
    return (b"0123456789abcdef" * (n // 16 + 1))[:n]


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a drop test resets connections on purpose


@pytest.fixture(scope="module")
def h1() -> Iterator[tuple[int, _State]]:
    state = _State()
    handler = type("Handler", (_Handler,), {"state": state})
    server = _Server(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], state
    server.shutdown()
    server.server_close()


def _raw(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)


def _read_response(f: Any) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response from a socket file (Content-Length bodies only)."""
    status_line = f.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers: dict[str, str] = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        name, value = line.decode().split(":", 1)
        headers[name.strip().lower()] = value.strip()
    body = f.read(int(headers.get("content-length", 0)))
    return int(status_line.split()[1]), headers, body


# -- HTTP/1.1 ----------------------------------------------------------------------------------


def test_h1_keepalive_bodies_head_and_bodiless_statuses(proxy_to, h1) -> None:
    port, state = h1
    p = proxy_to("http", port)
    payload = _pattern(300_000)
    with httpx.Client(base_url=f"http://127.0.0.1:{p.port}", timeout=TIMEOUT) as c:
        got = c.get("/echo?q=1").json()
        assert got["method"] == "GET" and got["path"] == "/echo?q=1"
        got = c.post("/echo", content=payload).json()  # Content-Length body
        assert got["len"] == len(payload) and got["sha"] == hashlib.sha256(payload).hexdigest()
        got = c.post("/echo", content=iter([payload[:1000], payload[1000:]])).json()  # chunked request body
        assert got["len"] == len(payload) and got["sha"] == hashlib.sha256(payload).hexdigest()
        r = c.get("/chunked")  # chunked response with a trailer
        assert r.text == "alpha-beta-gamma" and r.headers["transfer-encoding"] == "chunked"
        r = c.head("/echo")
        assert r.status_code == 200 and int(r.headers["content-length"]) > 0 and r.content == b""
        assert c.get("/nocontent").status_code == 204
        assert c.get("/notmod").status_code == 304
        got = c.get("/echo?after=bodiless").json()  # framing survived HEAD, 204 and 304
        assert got["path"] == "/echo?after=bodiless"
    ports = {h[2] for h in state.hits[-9:]}
    assert len(ports) == 1, "every request went over one kept-alive connection"
    assert len(p.of("proxy_conn_open")) == 1
    assert p.listener.warnings == []


def test_h1_large_bodies_are_streamed_both_ways(proxy_to, h1) -> None:
    port, state = h1
    p = proxy_to("http", port)
    n = 8 << 20
    # Response: the server sends the second half only after the client has the first through the proxy.
    state.gate("big-half").clear()
    seen = 0
    digest = hashlib.sha256()
    with httpx.Client(timeout=TIMEOUT) as c, c.stream("GET", f"http://127.0.0.1:{p.port}/big?n={n}") as r:
        for chunk in r.iter_bytes():
            seen += len(chunk)
            digest.update(chunk)
            if seen >= n // 2:
                state.gate("big-half").set()
    assert seen == n and digest.hexdigest() == hashlib.sha256(_pattern(n)).hexdigest()
    # Request: the client sends the second half only after the server has read the first.
    state.gate("upload-half").clear()
    with _raw(p.port) as s:
        s.sendall(f"POST /upload-gate HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n".encode())
        s.sendall(_pattern(n // 2))
        assert state.gate("upload-half").wait(TIMEOUT), "the proxy held the request body back"
        s.sendall(_pattern(n)[n // 2 :])
        status, _, body = _read_response(s.makefile("rb"))
    assert status == 200 and body == str(n).encode()


def test_h1_expect_100_continue(proxy_to, h1) -> None:
    port, state = h1
    p = proxy_to("http", port)
    with _raw(p.port) as s:
        f = s.makefile("rb")
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert f.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert f.readline() == b"\r\n"
        s.sendall(b"hello")
        status, _, body = _read_response(f)
        assert status == 200 and json.loads(body)["len"] == 5
    # Faulted: the answer comes instead of 100 Continue, and the connection closes (the body never came).
    p.install(_fault(ProxyAction.ERROR, path="/echo", status=413))
    before = len(state.hits)
    with _raw(p.port) as s:
        f = s.makefile("rb")
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        status, headers, _ = _read_response(f)
        assert status == 413 and headers["connection"] == "close"
        assert f.read() == b""
    assert len(state.hits) == before


def test_h1_pipelined_answers_keep_their_order(proxy_to, h1) -> None:
    port, state = h1
    p = proxy_to("http", port)
    p.install(_fault(ProxyAction.ERROR, path="/echo", status=503, message="busy"))
    state.gate("slow").clear()
    with _raw(p.port) as s:
        f = s.makefile("rb")
        s.sendall(
            b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        # The rule has fired on the second request while the server still holds the first answer.
        _until(lambda: len(p.of("proxy")) == 1, "the rule to fire")
        state.gate("slow").set()
        answers = [_read_response(f) for _ in range(3)]
    assert [a[0] for a in answers] == [200, 503, 204]
    assert answers[0][2] == b"slow" and json.loads(answers[1][2]) == {"error": "busy"}
    assert "/echo" not in [h[1] for h in state.hits[-2:]]


@pytest.mark.parametrize("faulting", [False, True])
def test_h1_bodies_trickled_byte_by_byte_and_pipelined(proxy_to, h1, faulting: bool) -> None:
    port, state = h1
    p = proxy_to("http", port)
    if faulting:
        p.install(_fault(ProxyAction.ERROR, path="/fault", status=418))
    before = len(state.hits)
    stream = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"POST /fault HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n"
        b"GET /echo?last HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    with _raw(p.port) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
        for i in range(len(stream)):
            s.send(stream[i : i + 1])
        answers = [_read_response(f) for _ in range(3)]
    assert json.loads(answers[0][2])["len"] == 5
    if faulting:
        assert answers[1][0] == 418 and state.paths()[before:] == ["/echo", "/echo?last"]
    else:
        assert json.loads(answers[1][2])["len"] == 3  # the server decoded the chunked body
    assert json.loads(answers[2][2])["path"] == "/echo?last"
    assert p.listener.warnings == []


def test_h1_connection_close_http10_and_bodies_ended_by_close(proxy_to, h1) -> None:
    port, _ = h1
    p = proxy_to("http", port, record=True)
    for request in (
        b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /echo HTTP/1.0\r\n\r\n",
    ):
        with _raw(p.port) as s:
            f = s.makefile("rb")
            s.sendall(request)
            status, _, body = _read_response(f)
            assert status == 200 and json.loads(body)["path"] == "/echo"
            assert f.read() == b"", "the server's close reached the client"
    with httpx.Client(timeout=TIMEOUT) as c:
        r = c.get(f"http://127.0.0.1:{p.port}/eof")
        assert r.text == "until the end" and "content-length" not in r.headers
    _until(lambda: len(p.of("proxy_request")) == 3, "three records")
    assert [e["path"] for e in p.of("proxy_request")] == ["/echo", "/echo", "/eof"]


def test_h1_upgrade_is_relayed_untouched(proxy_to, h1) -> None:
    port, _ = h1
    p = proxy_to("http", port, record=True)
    p.install(_fault(ProxyAction.ERROR, path="/elsewhere"))  # rules installed: heads are decoded
    with _raw(p.port) as s:
        f = s.makefile("rb")
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        assert f.readline() == b"HTTP/1.1 101 Switching Protocols\r\n"
        while f.readline() != b"\r\n":
            pass
        frame = b"\x81\x05hello\x00\xff GET / HTTP/1.1\r\n\r\n"  # not HTTP, and partly looks like it
        s.sendall(frame)
        assert f.read(5 + len(frame)) == b"ECHO:" + frame
    assert p.listener.warnings == []
    assert [(e["path"], e["status"]) for e in p.of("proxy_request")] == [("/ws", "101")]


def test_h1_method_and_path_matchers_mid_connection(proxy_to, h1) -> None:
    port, state = h1
    p = proxy_to("http", port)
    with httpx.Client(base_url=f"http://127.0.0.1:{p.port}", timeout=TIMEOUT) as c:
        assert c.post("/v1/orders").status_code == 200  # no rule yet: the fast path
        p.install(_fault(ProxyAction.ERROR, method="post", path="/v1/*"))
        before = len(state.hits)
        assert c.post("/v1/orders?dry=1").status_code == 500  # the query is not part of the path
        assert c.get("/v1/orders").status_code == 200  # another method
        assert c.post("/v1/orders/7/items").status_code == 200  # `*` is one segment
        p.install(_fault(ProxyAction.ERROR, path="/v1/**", status=502))
        assert c.put("/v1/orders/7/items", content=b"x" * 100).status_code == 502
        assert c.get("/v2/orders").status_code == 200
        p.clear()
        assert c.post("/v1/orders").status_code == 200
    assert state.paths()[before:] == ["/v1/orders", "/v1/orders/7/items", "/v2/orders", "/v1/orders"]
    assert len(p.of("proxy_conn_open")) == 1
    fired = p.of("proxy")
    assert [(e["method"], e["path"]) for e in fired] == [("POST", "/v1/orders"), ("PUT", "/v1/orders/7/items")]


def test_h1_error_and_response_answers(proxy_to, h1) -> None:
    port, state = h1
    p = proxy_to("http", port)
    before = len(state.hits)
    with httpx.Client(base_url=f"http://127.0.0.1:{p.port}", timeout=TIMEOUT) as c:
        p.install(_fault(ProxyAction.ERROR, path="/pay", headers=(("Retry-After", "7"),)))
        r = c.post("/pay", content=b"x" * 70_000)  # its body is read and discarded
        assert r.status_code == 500 and r.json() == {"error": "injected fault"}
        assert r.headers["content-type"] == "application/json" and r.headers["retry-after"] == "7"
        p.install(_fault(ProxyAction.ERROR, path="/pay", status=503, body='{"code":"down"}'))
        r = c.post("/pay", content=iter([b"a", b"b"]))  # a chunked body is discarded too
        assert r.status_code == 503 and r.json() == {"code": "down"}
        p.install(_fault(ProxyAction.RESPOND, path="/pay", status=201, body="made", headers=(("X-Id", "9"),)))
        r = c.post("/pay")
        assert (r.status_code, r.text, r.headers["x-id"]) == (201, "made", "9")
        r = c.head("/pay")
        assert r.status_code == 201 and r.headers["content-length"] == "4" and r.content == b""
        p.clear()
        assert c.get("/echo").json()["path"] == "/echo"  # the connection is still in step
    assert state.paths()[before:] == ["/echo"]


def test_h1_drop_resets_the_connection(proxy_to, h1) -> None:
    port, _ = h1
    p = proxy_to("http", port)
    p.install(_fault(ProxyAction.DROP, path="/pay"))
    with httpx.Client(base_url=f"http://127.0.0.1:{p.port}", timeout=TIMEOUT) as c:
        with pytest.raises(httpx.TransportError):
            c.post("/pay", content=b"x")
        assert c.get("/echo").status_code == 200  # a new connection is fine
    assert list(p.clear().values()) == [(1, 1, 0)]


def test_h1_delay_holds_the_request_before_the_server(proxy_to, h1) -> None:
    port, state = h1
    p = proxy_to("http", port)
    p.install(_fault(ProxyAction.DELAY, path="/echo", delay=0.3))
    with httpx.Client(base_url=f"http://127.0.0.1:{p.port}", timeout=TIMEOUT) as c:
        sent = time.monotonic()
        assert c.get("/echo").status_code == 200
    arrival = state.hits[-1][3]
    assert arrival - sent >= 0.3, "the server saw the request before the delay was over"
    assert p.of("proxy")[0]["delay_ms"] == "300"


def test_h1_recording(proxy_to, h1) -> None:
    port, _ = h1
    p = proxy_to("http", port, record=True)
    p.install(_fault(ProxyAction.ERROR, path="/pay", status=503))
    with httpx.Client(base_url=f"http://127.0.0.1:{p.port}", timeout=TIMEOUT) as c:
        c.get("/echo?x=1")
        c.post("/pay", content=b"{}", headers={"Idempotency-Key": "k-1"})
        c.get("/chunked")
        c.head("/echo")
    _until(lambda: len(p.of("proxy_request")) == 4, "four records")
    pay = p.of("proxy_request")[1]
    assert pay["req_idempotency_key"] == "k-1", "request headers are recorded for protocol invariants"
    assert "req_idempotency_key" not in p.of("proxy_request")[0]
    got = [(e["method"], e["path"], e["status"]) for e in p.of("proxy_request")]
    assert got == [
        ("GET", "/echo", "200"),
        ("POST", "/pay", "503"),
        ("GET", "/chunked", "200"),
        ("HEAD", "/echo", "200"),
    ]
    assert all(float(e["duration_ms"]) >= 0 for e in p.of("proxy_request"))


# -- what is not HTTP --------------------------------------------------------------------------


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        if self.server.greet:  # type: ignore[attr-defined]
            self.wfile.write(b"HELLO\n")
        while data := self.request.recv(65536):
            self.request.sendall(data.upper())


@pytest.fixture
def echo() -> Iterator[Callable[[bool], int]]:
    servers: list[socketserver.ThreadingTCPServer] = []

    def start(greet: bool) -> int:
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
        server.daemon_threads = True
        server.greet = greet  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_non_http_is_relayed_untouched_after_one_warning(proxy_to, echo) -> None:
    p = proxy_to("http", echo(False))
    for _ in range(2):
        with _raw(p.port) as s:
            s.sendall(b"\x16\x03\x01\x00\x05hello")
            assert s.recv(100) == b"\x16\x03\x01\x00\x05HELLO"
            s.sendall(b"more\r\n\r\n")
            assert s.recv(100) == b"MORE\r\n\r\n"
    assert len(p.listener.warnings) == 1 and "untouched" in p.listener.warnings[0]
    q = proxy_to("http2", echo(True))  # a server that speaks first is not HTTP either
    with _raw(q.port) as s:
        assert s.recv(100) == b"HELLO\n"
        s.sendall(b"ping")
        assert s.recv(100) == b"PING"
    assert len(q.listener.warnings) == 1


# -- h2c ---------------------------------------------------------------------------------------


class _H2State:
    def __init__(self) -> None:
        self.hits: list[tuple[str, str, float]] = []
        self.events: dict[str, asyncio.Event] = {}


async def _h2_app(scope: dict[str, Any], receive: Any, send: Any, state: _H2State) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path: str = scope["path"]
    state.hits.append((scope["method"], path, time.monotonic()))
    digest = hashlib.sha256()
    size = 0
    while True:
        msg = await receive()
        digest.update(msg.get("body", b""))
        size += len(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    status, body, trailers = 200, b"", None
    if path.startswith("/wait/"):
        event = state.events.setdefault(path[6:], asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), TIMEOUT)
            body = b"released"
        except TimeoutError:
            status = 504
    elif path.startswith("/release/"):
        state.events.setdefault(path[9:], asyncio.Event()).set()
        body = b"ok"
    elif path == "/big":
        n = int(scope["query_string"].split(b"=")[1])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(n).encode())]})
        data = _pattern(n)
        for i in range(0, n, 1 << 16):
            await send({"type": "http.response.body", "body": data[i : i + (1 << 16)], "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    elif path == "/trailers":
        body = b"with trailers"
        trailers = [(b"x-checksum", b"abc")]
    else:
        info = {"method": scope["method"], "path": path, "len": size, "sha": digest.hexdigest()}
        body = json.dumps(info).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode())],
            "trailers": trailers is not None,
        }
    )
    await send({"type": "http.response.body", "body": body})
    if trailers is not None:
        await send({"type": "http.response.trailers", "headers": trailers})


@pytest.fixture(scope="module")
def h2s() -> Iterator[tuple[int, _H2State]]:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    state = _H2State()
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.h2_max_concurrent_streams = 4  # fewer than the client may open: the proxy must queue streams
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await _h2_app(scope, receive, send, state)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    _until(listening, "hypercorn to listen")
    yield port, state
    loop.call_soon_threadsafe(stop.set)
    thread.join(TIMEOUT)


def _h2_client(port: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", http1=False, http2=True, timeout=TIMEOUT)


def test_h2_concurrent_streams_on_one_connection(proxy_to, h2s) -> None:
    port, _ = h2s
    p = proxy_to("http2", port)

    async def main() -> list[httpx.Response]:
        async with _h2_client(p.port) as c:
            # /wait/a only answers once /release/a arrived: the streams must be relayed side by side.
            waiting = asyncio.ensure_future(c.get("/wait/a"))
            _ = await c.get("/echo?first")
            rest = await asyncio.gather(c.get("/release/a"), *(c.get(f"/echo/{i}") for i in range(20)))
            return [await waiting, *rest]

    answers = asyncio.run(main())
    assert answers[0].status_code == 200 and answers[0].text == "released"
    assert answers[0].http_version == "HTTP/2"
    assert [r.json()["path"] for r in answers[2:]] == [f"/echo/{i}" for i in range(20)]
    assert len(p.of("proxy_conn_open")) == 1


def test_h2_large_bodies_under_flow_control(proxy_to, h2s) -> None:
    port, _ = h2s
    p = proxy_to("http2", port)
    n = 6 << 20

    async def main() -> tuple[dict[str, Any], bytes]:
        async with _h2_client(p.port) as c:
            up = (await c.post("/echo", content=_pattern(n))).json()
            down = (await c.get(f"/big?n={n}")).content
            return up, down

    up, down = asyncio.run(main())
    assert up["len"] == n and up["sha"] == hashlib.sha256(_pattern(n)).hexdigest()
    assert down == _pattern(n)


def _h2_raw(port: int, path: str, body: bytes, trailers: list[tuple[bytes, bytes]] | None) -> tuple[Any, ...]:
    """One request over a bare socket with the h2 library: (response headers, body, trailers)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    headers = [(b":method", b"POST"), (b":path", path.encode()), (b":scheme", b"http"), (b":authority", b"x")]
    headers.append((b"te", b"trailers"))
    conn.send_headers(1, headers)
    conn.send_data(1, body, end_stream=trailers is None)
    if trailers is not None:
        conn.send_headers(1, trailers, end_stream=True)
    got: dict[str, Any] = {"headers": None, "data": b"", "trailers": None}
    with _raw(port) as s:
        s.sendall(conn.data_to_send())
        while True:
            data = s.recv(65536)
            assert data, "the connection closed before the stream ended"
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    got["headers"] = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    got["data"] += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.TrailersReceived):
                    got["trailers"] = dict(ev.headers)
                elif isinstance(ev, h2.events.StreamEnded):
                    return got["headers"], got["data"], got["trailers"]
            s.sendall(conn.data_to_send())


def test_h2_trailers_both_ways(proxy_to, h2s) -> None:
    port, _ = h2s
    p = proxy_to("http2", port)
    headers, data, trailers = _h2_raw(p.port, "/trailers", b"", None)
    assert headers[b":status"] == b"200" and data == b"with trailers"
    assert trailers == {b"x-checksum": b"abc"}
    # Request trailers end the request stream: the server answers only once it has seen that end.
    headers, data, _ = _h2_raw(p.port, "/echo", b"body", [(b"x-sent", b"1")])
    assert headers[b":status"] == b"200" and json.loads(data)["len"] == 4


def test_h2_faults(proxy_to, h2s) -> None:
    port, state = h2s
    p = proxy_to("http2", port)

    async def main() -> list[Any]:
        async with _h2_client(p.port) as c:
            p.install(
                _fault(ProxyAction.ERROR, method="POST", path="/pay/*", status=503, headers=(("retry-after", "3"),))
            )
            before = len(state.hits)
            faulted, passed = await asyncio.gather(c.post("/pay/1", content=b"x" * 200_000), c.get("/pay/1"))
            unfaulted_only = state.hits[before:]
            p.install(_fault(ProxyAction.RESPOND, path="/pay", status=202, body="queued"))
            responded = await c.get("/pay")
            p.install(_fault(ProxyAction.DELAY, path="/echo", delay=0.3))
            sent = time.monotonic()
            delayed = await c.get("/echo")
            arrival = state.hits[-1][2]
            return [faulted, passed, unfaulted_only, responded, delayed, arrival - sent]

    faulted, passed, hits, responded, delayed, waited = asyncio.run(main())
    assert faulted.status_code == 503 and faulted.json() == {"error": "injected fault"}
    assert faulted.headers["retry-after"] == "3" and faulted.headers["content-type"] == "application/json"
    assert passed.status_code == 200 and [h[:2] for h in hits] == [("GET", "/pay/1")]
    assert (responded.status_code, responded.text) == (202, "queued")
    assert delayed.status_code == 200 and waited >= 0.3
    assert len(p.of("proxy_conn_open")) == 1

    p.install(_fault(ProxyAction.DROP, path="/echo"))

    async def dropped() -> list[Any]:
        async with _h2_client(p.port) as c:
            other = asyncio.ensure_future(c.get("/wait/dropped"))
            deadline = time.monotonic() + TIMEOUT
            while not any(h[1] == "/wait/dropped" for h in state.hits) and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            got = await asyncio.gather(other, c.get("/echo"), return_exceptions=True)
        async with _h2_client(p.port) as c:
            await c.get("/release/dropped")
        return got

    # The whole connection is reset, so a stream in flight beside the dropped one fails too.
    other, echo = asyncio.run(dropped())
    assert isinstance(other, httpx.TransportError) and isinstance(echo, httpx.TransportError)
    assert [e["action"] for e in p.of("proxy")][-1] == "drop"


def test_h2_recording(proxy_to, h2s) -> None:
    port, _ = h2s
    p = proxy_to("http2", port, record=True)
    p.install(_fault(ProxyAction.ERROR, path="/pay"))

    async def main() -> None:
        async with _h2_client(p.port) as c:
            await c.get("/echo?x=1")
            await c.post("/pay", content=b"{}", headers={"Idempotency-Key": "k-2"})

    asyncio.run(main())
    _until(lambda: len(p.of("proxy_request")) == 2, "two records")
    assert p.of("proxy_request")[1]["req_idempotency_key"] == "k-2"
    assert not any(k.startswith("req_:") for k in p.of("proxy_request")[1])
    got = [(e["method"], e["path"], e["status"]) for e in p.of("proxy_request")]
    assert got == [("GET", "/echo", "200"), ("POST", "/pay", "500")]
