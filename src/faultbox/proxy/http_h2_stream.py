"""The per-stream state and flow-control moves of the h2c proxy (faultbox.proxy.http_h2)."""

from __future__ import annotations

import contextlib
import time
from collections import deque

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hpack.struct import Header

_STREAM_WINDOW = 1 << 20  # what each side may send per stream before the proxy passed it on
_CONN_WINDOW = 1 << 22
_DEFAULT_WINDOW = 65535

Headers = list[Header]
Chunks = deque[tuple[bytes, int]]  # (data, flow-controlled length to acknowledge once it is passed on)


class H2Stream:
    """One request: the client's stream `cid` and, once started, the upstream stream `uid`."""

    __slots__ = (
        "answered",
        "cid",
        "down_end",
        "down_q",
        "down_sent_end",
        "down_trailers",
        "gone",
        "headers",
        "method",
        "path",
        "status",
        "t0",
        "uid",
        "up_end",
        "up_q",
        "up_sent_end",
        "up_trailers",
    )

    def __init__(self, cid: int, headers: Headers, method: str, path: str) -> None:
        self.cid = cid
        self.uid: int | None = None
        self.headers = headers
        self.method = method
        self.path = path
        self.t0 = time.monotonic()
        self.status = 0
        self.answered = False  # a rule answered it: the upstream never sees it
        self.gone = False  # reset or abandoned
        self.up_q: Chunks = deque()  # request data not yet passed upstream
        self.up_trailers: Headers | None = None
        self.up_end = False  # the client ended the request
        self.up_sent_end = False
        self.down_q: Chunks = deque()
        self.down_trailers: Headers | None = None
        self.down_end = False
        self.down_sent_end = False


def new_connection(client_side: bool) -> H2Connection:
    conn = H2Connection(H2Configuration(client_side=client_side, header_encoding=None))
    values = {
        SettingCodes.INITIAL_WINDOW_SIZE: _STREAM_WINDOW,
        SettingCodes.MAX_CONCURRENT_STREAMS: 100,
        SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 16,
    }
    if client_side:
        values[SettingCodes.ENABLE_PUSH] = 0
    conn.local_settings = Settings(client=client_side, initial_values=values)
    conn.initiate_connection()
    conn.increment_flow_control_window(_CONN_WINDOW - _DEFAULT_WINDOW)
    return conn


def send_within_window(
    conn: H2Connection, stream_id: int, q: Chunks, source: H2Connection, source_id: int | None
) -> bool:
    """Send queued data on `conn` as far as its window allows, acknowledging each chunk to `source`
    once it is all sent; True when the queue is empty."""
    while q:
        data, length = q[0]
        room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
        if room <= 0:
            return False
        if len(data) > room:
            conn.send_data(stream_id, data[:room])
            q[0] = (data[room:], length)
            continue
        conn.send_data(stream_id, data)
        q.popleft()
        if length and source_id is not None:
            with contextlib.suppress(ProtocolError):
                source.acknowledge_received_data(length, source_id)
    return True
