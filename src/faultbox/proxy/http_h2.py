"""h2c half of the HTTP proxy (see faultbox.proxy.http for what it does and its limits).

The proxy is an HTTP/2 server to the client and an HTTP/2 client to the upstream (two h2 state
machines) and maps each client stream to an upstream stream. Received DATA is acknowledged to its
sender only once it has been handed to the other connection within that connection's flow-control
window, so each side's window is what bounds the data the proxy holds; nothing else waits on the
sockets. A stream the upstream has no room for (MAX_CONCURRENT_STREAMS) waits until one closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    InformationalResponseReceived,
    PushedStreamReceived,
    RemoteSettingsChanged,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes
from hpack import HeaderTuple

from faultbox.model.proxy import ProxyAction, ProxyFault
from faultbox.proxy.http_frame import Dropped
from faultbox.proxy.http_h2_stream import H2Stream, Headers, new_connection, send_within_window
from faultbox.proxy.http_reply import fault_reply, header_fields, request_path
from faultbox.proxy.rules import Verdict
from faultbox.proxy.session import Session, Stream

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

_READ = 1 << 16


class H2:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.down = new_connection(client_side=False)  # faces the client
        self.up = new_connection(client_side=True)  # faces the upstream
        self.by_cid: dict[int, H2Stream] = {}
        self.by_uid: dict[int, H2Stream] = {}
        self.parked: deque[H2Stream] = deque()
        self.high = (0, 0)  # (upstream id, client id) of the last stream started upstream
        self.dropped = False
        self.delays: set[asyncio.Task[None]] = set()
        self._down_events: dict[type[Event], Callable[[Event], None]] = {
            RequestReceived: self._request,  # type: ignore[dict-item]
            DataReceived: self._request_data,  # type: ignore[dict-item]
            TrailersReceived: self._request_trailers,  # type: ignore[dict-item]
            StreamEnded: self._request_end,  # type: ignore[dict-item]
            StreamReset: self._client_reset,  # type: ignore[dict-item]
            WindowUpdated: self._down_window,  # type: ignore[dict-item]
            RemoteSettingsChanged: self._down_settings,  # type: ignore[dict-item]
            ConnectionTerminated: self._client_goaway,  # type: ignore[dict-item]
        }
        self._up_events: dict[type[Event], Callable[[Event], None]] = {
            ResponseReceived: self._response,  # type: ignore[dict-item]
            InformationalResponseReceived: self._interim,  # type: ignore[dict-item]
            DataReceived: self._response_data,  # type: ignore[dict-item]
            TrailersReceived: self._response_trailers,  # type: ignore[dict-item]
            StreamEnded: self._response_end,  # type: ignore[dict-item]
            StreamReset: self._server_reset,  # type: ignore[dict-item]
            WindowUpdated: self._up_window,  # type: ignore[dict-item]
            RemoteSettingsChanged: self._up_settings,  # type: ignore[dict-item]
            ConnectionTerminated: self._server_goaway,  # type: ignore[dict-item]
            PushedStreamReceived: self._pushed,  # type: ignore[dict-item]
        }

    async def run(self, first: bytes, server_first: asyncio.Future[bytes]) -> None:
        s = self.s
        pumps: set[asyncio.Future[None]] = set()
        try:
            if self._feed(self.down, self._down_events, first, "client"):
                pumps = {
                    asyncio.ensure_future(self._pump(s.client, self.down, self._down_events, "client", None)),
                    asyncio.ensure_future(self._pump(s.server, self.up, self._up_events, "server", server_first)),
                }
                done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
        finally:
            for task in [*pumps, *self.delays]:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
        if self.dropped:
            raise Dropped
        with contextlib.suppress(ProtocolError):
            # Whichever side went away, the other hears it the HTTP/2 way before the socket closes.
            self.down.close_connection()
            self.up.close_connection()
        self._flush()

    async def _pump(
        self,
        src: Stream,
        conn: H2Connection,
        handlers: dict[type[Event], Callable[[Event], None]],
        side: str,
        first: asyncio.Future[bytes] | None,
    ) -> None:
        data = await first if first is not None else b""
        while True:
            if not data:
                data = await src.read(_READ)
                if not data:
                    return
            if not self._feed(conn, handlers, data, side):
                return
            data = b""

    def _feed(
        self, conn: H2Connection, handlers: dict[type[Event], Callable[[Event], None]], data: bytes, side: str
    ) -> bool:
        """Handle what one side sent; False when it broke the protocol (the connection then ends)."""
        try:
            events = conn.receive_data(data)
        except ProtocolError as exc:
            ep = self.s.endpoint
            self.s.warn(
                f"http2 proxy of {ep.service}.{ep.interface}: the {side} broke HTTP/2 ({exc}); connection closed"
            )
            self._flush()
            return False
        for event in events:
            handler = handlers.get(type(event))
            if handler is not None:
                handler(event)
        self._unpark()
        self._flush()
        return True

    def _flush(self) -> None:
        out = self.down.data_to_send()
        if out:
            self.s.client.write(out)
        out = self.up.data_to_send()
        if out:
            self.s.server.write(out)

    # -- the client's side --------------------------------------------------------------------

    def _request(self, ev: RequestReceived) -> None:
        method = path = b""
        for name, value in ev.headers:
            if name == b":method":
                method = bytes(value)
            elif name == b":path":
                path = bytes(value)
        st = H2Stream(ev.stream_id, ev.headers, method.decode("latin-1"), request_path(path.decode("latin-1")))
        self.by_cid[ev.stream_id] = st
        st.up_end = ev.stream_ended is not None
        s = self.s
        verdict = s.decide(method=st.method, path=st.path) if s.faulting else None
        if verdict is None:
            self._start(st)
        elif verdict.delay:
            task = asyncio.ensure_future(self._delayed(st, verdict))
            self.delays.add(task)
            task.add_done_callback(self.delays.discard)
        else:
            self._apply(st, verdict)

    async def _delayed(self, st: H2Stream, verdict: Verdict) -> None:
        await self.s.wait(verdict)
        if st.gone:
            return
        try:
            self._apply(st, verdict)
        except Dropped:
            return
        self._unpark()
        self._flush()

    def _apply(self, st: H2Stream, verdict: Verdict) -> None:
        action = verdict.action
        if action is ProxyAction.DROP:
            self.dropped = True
            self.s.client.reset()
            self.s.server.reset()
            raise Dropped
        if verdict.rule is not None and action in (ProxyAction.RESPOND, ProxyAction.ERROR):
            self._answer(st, verdict.rule.fault)
        else:
            self._start(st)

    def _answer(self, st: H2Stream, fault: ProxyFault) -> None:
        status, body, extra = fault_reply(fault)
        no_body = st.method == "HEAD" or status in (204, 304)
        headers: Headers = [HeaderTuple(b":status", str(status).encode())]
        headers.extend(HeaderTuple(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra)
        if not no_body:
            headers.append(HeaderTuple(b"content-length", str(len(body)).encode()))
        st.answered = True
        st.status = status
        for _, length in st.up_q:
            self._ack(self.down, length, st.cid)
        st.up_q.clear()
        end = no_body or not body
        self.down.send_headers(st.cid, headers, end_stream=end)
        if end:
            self._down_done(st)
        else:
            st.down_q.append((body, 0))
            st.down_end = True
            self._send_down(st)

    def _start(self, st: H2Stream) -> None:
        up = self.up
        if up.open_outbound_streams >= up.remote_settings.max_concurrent_streams:
            self.parked.append(st)
            return
        uid = up.get_next_available_stream_id()
        st.uid = uid
        self.by_uid[uid] = st
        self.high = (uid, st.cid)
        end = st.up_end and not st.up_q and st.up_trailers is None
        up.send_headers(uid, st.headers, end_stream=end)
        if end:
            st.up_sent_end = True
        else:
            self._send_up(st)

    def _unpark(self) -> None:
        while self.parked and self.up.open_outbound_streams < self.up.remote_settings.max_concurrent_streams:
            st = self.parked.popleft()
            if not st.gone:
                self._start(st)

    def _request_data(self, ev: DataReceived) -> None:
        st = self.by_cid.get(ev.stream_id)
        if st is None or st.answered or st.gone or not ev.data:
            self._ack(self.down, ev.flow_controlled_length, ev.stream_id)
            return
        st.up_q.append((ev.data, ev.flow_controlled_length))
        self._send_up(st)

    def _request_trailers(self, ev: TrailersReceived) -> None:
        st = self.by_cid.get(ev.stream_id)
        if st is not None:
            st.up_trailers = ev.headers

    def _request_end(self, ev: StreamEnded) -> None:
        st = self.by_cid.get(ev.stream_id)
        if st is None:
            return
        st.up_end = True
        if st.answered:
            self._forget(st)
        else:
            self._send_up(st)

    def _client_reset(self, ev: StreamReset) -> None:
        st = self.by_cid.get(ev.stream_id)
        if st is None:
            return
        st.gone = True
        if st.uid is not None:
            with contextlib.suppress(ProtocolError):
                self.up.reset_stream(st.uid, ev.error_code)
        for _, length in st.down_q:
            self._ack(self.up, length, st.uid)
        self._forget(st, force=True)

    def _down_window(self, ev: WindowUpdated) -> None:
        if ev.stream_id:
            st = self.by_cid.get(ev.stream_id)
            if st is not None:
                self._send_down(st)
        else:
            for st in list(self.by_cid.values()):
                self._send_down(st)

    def _down_settings(self, ev: RemoteSettingsChanged) -> None:
        if SettingCodes.INITIAL_WINDOW_SIZE in ev.changed_settings:
            for st in list(self.by_cid.values()):
                self._send_down(st)

    def _client_goaway(self, ev: ConnectionTerminated) -> None:
        with contextlib.suppress(ProtocolError):
            self.up.close_connection(ev.error_code or 0)

    # -- the upstream's side ------------------------------------------------------------------

    def _response(self, ev: ResponseReceived) -> None:
        st = self.by_uid.get(ev.stream_id)
        if st is None or st.gone:
            return
        for name, value in ev.headers:
            if name == b":status":
                st.status = int(value)
                break
        end = ev.stream_ended is not None
        try:
            self.down.send_headers(st.cid, ev.headers, end_stream=end)
        except ProtocolError:
            self._abandon(st)
            return
        if end:
            st.down_end = True
            self._down_done(st)

    def _interim(self, ev: InformationalResponseReceived) -> None:
        st = self.by_uid.get(ev.stream_id)
        if st is not None and not st.gone:
            try:
                self.down.send_headers(st.cid, ev.headers)
            except ProtocolError:
                self._abandon(st)

    def _response_data(self, ev: DataReceived) -> None:
        st = self.by_uid.get(ev.stream_id)
        if st is None or st.gone or not ev.data:
            self._ack(self.up, ev.flow_controlled_length, ev.stream_id)
            return
        st.down_q.append((ev.data, ev.flow_controlled_length))
        self._send_down(st)

    def _response_trailers(self, ev: TrailersReceived) -> None:
        st = self.by_uid.get(ev.stream_id)
        if st is not None:
            st.down_trailers = ev.headers

    def _response_end(self, ev: StreamEnded) -> None:
        st = self.by_uid.get(ev.stream_id)
        if st is not None and not st.down_sent_end:
            st.down_end = True
            self._send_down(st)

    def _server_reset(self, ev: StreamReset) -> None:
        st = self.by_uid.get(ev.stream_id)
        if st is None:
            return
        st.gone = True
        with contextlib.suppress(ProtocolError):
            self.down.reset_stream(st.cid, ev.error_code)
        for _, length in st.up_q:
            self._ack(self.down, length, st.cid)
        self._forget(st, force=True)

    def _up_window(self, ev: WindowUpdated) -> None:
        if ev.stream_id:
            st = self.by_uid.get(ev.stream_id)
            if st is not None:
                self._send_up(st)
        else:
            for st in list(self.by_uid.values()):
                self._send_up(st)

    def _up_settings(self, ev: RemoteSettingsChanged) -> None:
        if SettingCodes.INITIAL_WINDOW_SIZE in ev.changed_settings:
            for st in list(self.by_uid.values()):
                self._send_up(st)

    def _server_goaway(self, ev: ConnectionTerminated) -> None:
        # Streams the upstream will not process are the client's to retry: tell it which ones.
        last = ev.last_stream_id or 0
        if last >= self.high[0]:
            cid = self.high[1]
        else:
            cid = max((st.cid for st in self.by_cid.values() if st.uid is not None and st.uid <= last), default=0)
        with contextlib.suppress(ProtocolError):
            self.down.close_connection(ev.error_code or 0, last_stream_id=cid)

    def _pushed(self, ev: PushedStreamReceived) -> None:
        if ev.pushed_stream_id is not None:
            with contextlib.suppress(ProtocolError):
                self.up.reset_stream(ev.pushed_stream_id, ErrorCodes.REFUSED_STREAM)

    # -- moving data within the windows -------------------------------------------------------

    def _send_up(self, st: H2Stream) -> None:
        if st.uid is None or st.up_sent_end or st.gone:
            return
        try:
            if send_within_window(self.up, st.uid, st.up_q, self.down, st.cid) and st.up_end:
                if st.up_trailers is not None:
                    self.up.send_headers(st.uid, st.up_trailers, end_stream=True)
                else:
                    self.up.end_stream(st.uid)
                st.up_sent_end = True
                self._forget(st)
        except ProtocolError:
            self._abandon(st)

    def _send_down(self, st: H2Stream) -> None:
        if st.down_sent_end or st.gone:
            return
        try:
            if send_within_window(self.down, st.cid, st.down_q, self.up, st.uid) and st.down_end:
                if st.down_trailers is not None:
                    self.down.send_headers(st.cid, st.down_trailers, end_stream=True)
                else:
                    self.down.end_stream(st.cid)
                self._down_done(st)
        except ProtocolError:
            self._abandon(st)

    def _down_done(self, st: H2Stream) -> None:
        st.down_sent_end = True
        s = self.s
        if s.recording:
            s.record(
                {
                    "method": st.method,
                    "path": st.path,
                    "status": st.status,
                    "duration_ms": round((time.monotonic() - st.t0) * 1000, 1),
                    **header_fields((bytes(k), bytes(v)) for k, v in st.headers),
                }
            )
        self._forget(st)

    def _abandon(self, st: H2Stream) -> None:
        """A stream one side can no longer take: reset both halves."""
        st.gone = True
        with contextlib.suppress(ProtocolError):
            self.down.reset_stream(st.cid, ErrorCodes.INTERNAL_ERROR)
        if st.uid is not None:
            with contextlib.suppress(ProtocolError):
                self.up.reset_stream(st.uid, ErrorCodes.CANCEL)
        self._forget(st, force=True)

    def _forget(self, st: H2Stream, force: bool = False) -> None:
        if force or (st.down_sent_end and (st.up_sent_end or (st.answered and st.up_end))):
            self.by_cid.pop(st.cid, None)
            if st.uid is not None:
                self.by_uid.pop(st.uid, None)

    def _ack(self, conn: H2Connection, length: int, stream_id: int | None) -> None:
        if length and stream_id is not None:
            with contextlib.suppress(ProtocolError):
                conn.acknowledge_received_data(length, stream_id)
