"""Length-prefixed JSON messages over a stream socket: how a test worker and its runner talk.

A stream (not a datagram socket) because a test's result, with every event, can be many megabytes."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

_HEADER = struct.Struct("!Q")


def encode_frame(message: dict[str, Any]) -> bytes:
    data = json.dumps(message, ensure_ascii=False, default=_default).encode()
    return _HEADER.pack(len(data)) + data


def send_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(encode_frame(message))


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


def recv_frame(sock: socket.socket) -> dict[str, Any] | None:
    """The next message, or None when the peer closed the socket (also mid-message)."""
    reader = FrameReader()
    while True:
        messages = reader.feed(sock.recv(1 << 20) or b"")
        if messages:
            return messages[0]
        if reader.closed:
            return None


class FrameReader:
    """Turns received bytes into messages; feed(b"") marks the end of the stream."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.closed = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        if not data:
            self.closed = True
            return []
        self._buf += data
        out: list[dict[str, Any]] = []
        while len(self._buf) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buf)
            if len(self._buf) < _HEADER.size + size:
                break
            out.append(json.loads(bytes(self._buf[_HEADER.size : _HEADER.size + size])))
            del self._buf[: _HEADER.size + size]
        return out
