"""Pure pieces of the HTTP proxy: chunked-body walking, body lengths, paths, injected answers."""

from __future__ import annotations

import json

import pytest

from faultbox.model.proxy import ProxyAction, ProxyFault
from faultbox.proxy.http_frame import Chunks, Garbled, lengths
from faultbox.proxy.http_reply import fault_reply, h1_reply, request_path

BODY = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: 9\r\nX-More: 1\r\n\r\n"
NEXT = b"GET / HTTP/1.1\r\n\r\n"


def _walk(pieces: list[bytes]) -> tuple[int, int] | None:
    """(index of the piece where the body ended, offset in it), walking the pieces in order."""
    chunks = Chunks()
    for i, piece in enumerate(pieces):
        end = chunks.feed(piece, 0)
        if end >= 0:
            return i, end
    return None


def test_chunked_body_end_is_found_whatever_the_read_boundaries() -> None:
    data = BODY + NEXT
    assert _walk([data]) == (0, len(BODY))
    for cut in range(1, len(BODY)):
        got = _walk([data[:cut], data[cut:]])
        assert got is not None
        piece, end = got
        assert cut + end == len(BODY) if piece == 1 else end == len(BODY), cut
    assert _walk([bytes([b]) for b in BODY]) == (len(BODY) - 1, 1)


def test_chunked_body_without_trailers_and_bad_sizes() -> None:
    assert Chunks().feed(b"0\r\n\r\nrest", 0) == 5
    assert Chunks().feed(b"3\r\nabc\r\n", 0) == -1
    with pytest.raises(Garbled):
        Chunks().feed(b"zz\r\n", 0)
    with pytest.raises(Garbled):
        Chunks().feed(b"-1\r\n", 0)


def testlengths() -> None:
    assert lengths(b"get / http/1.1\r\nhost: x\r\n\r\n") == (None, 0)
    assert lengths(b"post / http/1.1\r\ncontent-length: 12\r\n\r\n") == (12, 0)
    assert lengths(b"post / http/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n") == (None, 1)
    assert lengths(b"http/1.1 200 ok\r\ntransfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n\r\n") == (None, 2)
    with pytest.raises(Garbled):
        lengths(b"post / http/1.1\r\ncontent-length: x\r\n\r\n")


def test_request_path() -> None:
    assert request_path("/v1/a?x=1") == "/v1/a"
    assert request_path("http://h:1/v1/a?x") == "/v1/a"
    assert request_path("http://h:1") == "/"
    assert request_path("*") == "*"


def test_error_and_response_answers() -> None:
    status, body, headers = fault_reply(ProxyFault(ProxyAction.ERROR))
    assert (status, json.loads(body), headers) == (
        500,
        {"error": "injected fault"},
        [("content-type", "application/json")],
    )
    fault = ProxyFault(ProxyAction.ERROR, status=503, message="busy", headers=(("Retry-After", "3"),))
    status, body, headers = fault_reply(fault)
    assert (status, json.loads(body)) == (503, {"error": "busy"}) and ("Retry-After", "3") in headers
    assert fault_reply(ProxyFault(ProxyAction.RESPOND, body="[1]"))[2] == [("content-type", "application/json")]
    fault = ProxyFault(
        ProxyAction.RESPOND, status=201, body="ok", headers=(("Content-Type", "x/y"), ("Content-Length", "9"))
    )
    assert fault_reply(fault) == (201, b"ok", [("Content-Type", "x/y")])
    status, raw = h1_reply(fault, head_only=False, close=True)
    assert raw == b"HTTP/1.1 201 Created\r\nContent-Type: x/y\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    assert h1_reply(fault, head_only=True, close=False)[1].endswith(b"Content-Length: 2\r\n\r\n")
    assert (
        b"Content-Length" not in h1_reply(ProxyFault(ProxyAction.RESPOND, status=204), head_only=False, close=False)[1]
    )
