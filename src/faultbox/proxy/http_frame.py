"""HTTP/1.x framing for the HTTP proxy: where heads and bodies end, with the fewest Python steps.

httptools validates heads when the proxy decodes them; body lengths are read from the lowercased head
(Content-Length, Transfer-Encoding) and chunked bodies are walked chunk by chunk, never byte by byte.
"""

from __future__ import annotations

import re

import httptools

MAX_HEAD = 1 << 18  # a head this long without its end is not one
CRLF2 = b"\r\n\r\n"
_HEX = re.compile(rb"[0-9a-fA-F]{1,16}")


class Garbled(Exception):
    """Bytes that do not frame as HTTP/1.x."""


class Dropped(Exception):
    """A drop rule fired: both sides were reset."""


class Quiet:
    """A parser callback object with no callbacks: httptools then validates without calling Python."""

    __slots__ = ()


QUIET = Quiet()


class Chunks:
    """Walks a chunked body: chunk-size lines, chunk data, then trailer lines up to an empty one."""

    __slots__ = ("left", "line", "trailers")

    def __init__(self) -> None:
        self.left = 0  # chunk data (and its CRLF) still to skip
        self.line = b""  # a size or trailer line split across reads
        self.trailers = False

    def feed(self, data: bytes, pos: int) -> int:
        """Walk data[pos:]; the offset just past the body, or -1 when all of it belongs to the body."""
        n = len(data)
        while True:
            if self.left:
                if n - pos <= self.left:
                    self.left -= n - pos
                    return -1
                pos += self.left
                self.left = 0
            nl = data.find(b"\n", pos)
            if nl < 0:
                self.line += data[pos:]
                if len(self.line) > 8192:
                    raise Garbled("a chunk-size or trailer line over 8 KiB")
                return -1
            line = self.line + data[pos:nl] if self.line else data[pos:nl]
            self.line = b""
            pos = nl + 1
            if self.trailers:
                if not line.strip():
                    return pos
                continue
            size = line.split(b";", 1)[0].strip()
            if not _HEX.fullmatch(size):
                raise Garbled(f"bad chunk size {size[:20]!r}")
            length = int(size, 16)
            if length == 0:
                self.trailers = True
            else:
                self.left = length + 2


def lengths(low: bytes) -> tuple[int | None, int]:
    """(Content-Length, Transfer-Encoding: 0 none, 1 ending in chunked, 2 other) from a lowercased head."""
    length = None
    i = low.find(b"\ncontent-length:")
    if i >= 0:
        end = low.find(b"\r\n", i + 1)
        try:
            length = int(low[i + 16 : end])
        except ValueError:
            raise Garbled("bad Content-Length") from None
        if length < 0:
            raise Garbled("negative Content-Length")
    i = low.find(b"\ntransfer-encoding:")
    if i < 0:
        return length, 0
    te = 0
    while i >= 0:
        end = low.find(b"\r\n", i + 1)
        te = 1 if low[i + 19 : end].rstrip().endswith(b"chunked") else 2
        i = low.find(b"\ntransfer-encoding:", end)
    return length, te


def to_int(text: bytes) -> int:
    """A decimal field of a head; -1 (which frames nothing) when it is not one."""
    try:
        return int(text)
    except ValueError:
        return -1


def probe(part: bytes) -> None:
    """Raise Garbled unless `part` can begin an HTTP/1.x request."""
    parser = httptools.HttpRequestParser(QUIET)
    try:
        parser.feed_data(part)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError as exc:
        raise Garbled(f"not an HTTP/1.x request ({exc})") from None


def response_head(head: bytes, decode: bool) -> tuple[int, int | None, int]:
    """(status, Content-Length, Transfer-Encoding kind); without `decode` the head is only framed."""
    if not decode:
        if not head.startswith(b"HTTP/1.") or head[12:13] not in (b" ", b"\r"):
            raise Garbled("not an HTTP/1.x status line")
        try:
            status = int(head[9:12])
        except ValueError:
            raise Garbled("not an HTTP/1.x status line") from None
        length, te = lengths(head.lower())
        return status, length, te
    parser = httptools.HttpResponseParser(QUIET)
    try:
        parser.feed_data(head)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError as exc:
        raise Garbled(f"bad response head ({exc})") from None
    length, te = lengths(head.lower())
    return parser.get_status_code(), length, te
