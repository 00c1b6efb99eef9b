"""The TCP proxy against real sockets: both directions at once, server-speaks-first, delay and drop."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from faultbox.model.proxy import ProxyAction, ProxyFault


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"HELLO\n")  # the server speaks first
        try:
            for line in self.rfile:
                self.wfile.write(b"ECHO " + line)
        except ConnectionError:
            pass  # a drop fault resets the proxy's connection to this server: not this server's error


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def test_server_speaks_first_and_lines_echo(proxy_to, echo) -> None:
    p = proxy_to("tcp", echo)
    with _connect(p.port) as s:
        f = s.makefile("rb")
        assert f.readline() == b"HELLO\n"  # before the client sent anything
        s.sendall(b"one\ntwo\n")  # pipelined
        assert f.readline() == b"ECHO one\n"
        assert f.readline() == b"ECHO two\n"
    assert p.of("proxy_conn_open")


def test_drop_resets_matching_connections_only(proxy_to, echo) -> None:
    p = proxy_to("tcp", echo)
    p.install(ProxyFault(ProxyAction.DROP, (("method", "STOCK*"),)))
    with _connect(p.port) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"STOCK w\n")
        _assert_cut(f)
    with _connect(p.port) as s:
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"PING\n")
        assert f.readline() == b"ECHO PING\n"
    fired = p.of("proxy")
    assert [e["action"] for e in fired] == ["drop"]
    assert fired[0]["method"] == "STOCK w"
    stats = p.clear()
    assert list(stats.values()) == [(1, 1, 0)]


def _assert_cut(f) -> None:
    try:
        data = f.readline()
    except OSError:
        return  # reset
    assert data == b"", f"the connection was not cut: {data!r}"


def test_delay_holds_the_first_request(proxy_to, echo) -> None:
    p = proxy_to("tcp", echo)
    p.install(ProxyFault(ProxyAction.DELAY, (), delay=0.3))
    with _connect(p.port) as s:
        f = s.makefile("rb")
        f.readline()
        start = time.monotonic()
        s.sendall(b"x\n")
        assert f.readline() == b"ECHO x\n"
        assert time.monotonic() - start >= 0.3
    assert p.of("proxy")[0]["delay_ms"] == "300"
