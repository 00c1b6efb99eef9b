"""Kafka frames (int32 length + body) read in chunks from one direction of a proxied connection."""

from __future__ import annotations

from faultbox.proxy.kafka_codec import LENGTH
from faultbox.proxy.session import Stream

_CHUNK = 256 * 1024


class NotKafka(Exception):
    """Bytes that cannot be Kafka framing: the direction is relayed raw from there on."""


class Frames:
    """Whole frames (length included) out of one direction, read in chunks: the frames that arrive
    together are handled, and forwarded, together."""

    __slots__ = ("buf", "stream")

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.buf = bytearray()

    def take(self, smallest: int, largest: int) -> bytes | None:
        """The next frame if it is all buffered; raises NotKafka for a length out of bounds."""
        buf = self.buf
        have = len(buf)
        if have < 4:
            return None
        (size,) = LENGTH.unpack_from(buf)
        if not smallest <= size <= largest:
            raise NotKafka(f"a {size}-byte frame is not Kafka")
        end = 4 + size
        if have < end:
            return None
        if have == end:
            frame = bytes(buf)
            buf.clear()
        else:
            with memoryview(buf) as view:
                frame = bytes(view[:end])
            del buf[:end]
        return frame

    async def fill(self) -> bool:
        """Read what the peer sent next; False at its EOF."""
        data = await self.stream.read(_CHUNK)
        self.buf += data
        return bool(data)


async def flush(stream: Stream, out: list[bytes]) -> None:
    """Write the frames gathered in `out` at once and empty it."""
    if out:
        stream.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()
        await stream.drain()
