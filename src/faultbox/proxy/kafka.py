"""The Kafka proxy: frames relayed both ways at once, requests decided per topic, broker addresses
rewritten to the proxy's own.

Framing: each direction is read in chunks and cut into frames (int32 length + body); the frames of a
chunk are forwarded with one write. A request's header (api key, version, correlation id) tells
which kio schemas decode it and its response (`kafka_codec`). Kafka answers a connection's requests
in order; responses are matched to the queue of pending requests by correlation id, and a produce
with acks=0 (which gets no response) queues nothing. A response is decoded only when it must be
rewritten: those that can carry broker addresses (Metadata, FindCoordinator, DescribeCluster, and
Produce v10+ / Fetch v16+ with their node_endpoints, so these two are decoded every time) get every
address replaced by the address the client reached the proxy on, so clients keep coming back
through it. This assumes one broker behind the proxy: with several, all would be named as the one.
ApiVersions responses are narrowed to the intersection of the broker's versions and kio's (an API
with no common version is left out), so a client never picks a version the proxy cannot decode; in
practice that only raises minimum versions (kio has no Produce v0-2, Fetch v0-3, ...).
An api key or version kio does not know is relayed untouched, with its response (one warning). Bytes
that are not Kafka framing (TLS, a length over 100 MiB, a response that matches no request) turn that
direction into a plain relay after one warning; SASL is not understood (after a v0 SaslHandshake the
raw tokens go through as unknown frames).

Rules (while some are installed, or the interface records): the request is decoded and
`session.decide(method=<api name>, topic=<name>)` asked once per topic it names (`topic=None` for
one that names none: join_group, a Metadata request for all topics, ...). A `topic=` rule without
`method=` also matches the Metadata requests that look the topic up. Fetch v13+ names topics by id;
ids are learned from the Metadata responses relayed for the same broker, and an id not seen yet is
matched as its UUID text.
- delay: the request waits (the longest delay among its topics) before it is forwarded; the
  connection's later requests wait behind it, as behind a slow broker.
- drop: both sides are reset before the request is forwarded; the client reconnects and retries.
- error(code=): the matched topics are answered with the code (default UNKNOWN_SERVER_ERROR) on each
  of their partitions, in a response of the request's version, in order with the other responses.
  The request's other topics are forwarded (the request re-encoded without the matched ones) and the
  broker's response is merged with the proxy's entries. Exceptions: a request with no topics gets the
  error in its top-level error code (per group or coordinator key for the APIs answering that way);
  Metadata is forwarded whole and the matched topics' entries get the code; offset_fetch v8+
  (topics listed per group) is not split: all its topics get the error. A produce with acks=0 cannot
  be answered: its matched topics are just not forwarded.
- duplicate (produce only): the request is forwarded, then again with only the duplicated topics;
  the client gets the first response, the second is read and discarded.
Recording: one `proxy_request` per request (method, topic: its topics comma-joined, status: the first
error code name in the response or "ok", duration_ms, client_id). Fetch sessions (KIP-227) are not
tracked: an errored topic of an incremental fetch stays in the broker's session.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any
from uuid import UUID

from kio.schema.errors import ErrorCode

from faultbox.model.proxy import ProxyAction, ProxyFault
from faultbox.proxy import kafka_answers as ka
from faultbox.proxy import kafka_codec as kc
from faultbox.proxy.kafka_frames import Frames, NotKafka, flush
from faultbox.proxy.rules import Verdict
from faultbox.proxy.session import Session

# topic id -> name, per upstream (host, port): Metadata and Fetch may use different connections.
_TOPIC_IDS: dict[tuple[str, int], dict[UUID, str]] = {}

_FORWARD, _DISCARD, _ANSWER = range(3)


class _Pending:
    """A request waiting for its response."""

    __slots__ = ("api", "correlation_id", "kind")

    def __init__(self, correlation_id: int, api: kc.Api | None, kind: int = _FORWARD) -> None:
        self.correlation_id = correlation_id
        self.api = api  # None: relay its response untouched
        self.kind = kind


class _Decided(_Pending):
    """A request the proxy decoded (rules installed, or recording), with what its response needs;
    or (kind _ANSWER) the proxy's own answer, waiting for its turn."""

    __slots__ = ("client_id", "errors", "frame", "meta", "started", "topic")

    def __init__(self, correlation_id: int, api: kc.Api) -> None:
        super().__init__(correlation_id, api)
        self.frame = b""  # of an _ANSWER
        self.errors: list[Any] = []  # response topic entries to merge into the broker's answer
        self.meta: dict[str | None, ka.Failure] = {}  # Metadata errors by topic (None: every topic)
        self.topic: str | None = None
        self.client_id: str | None = None
        self.started = time.monotonic()

    def changes(self, recording: bool) -> bool:
        """Whether its response must be decoded (to merge errors or to record its status)."""
        return bool(self.errors or self.meta or recording)


def check_fault(fault: ProxyFault) -> str | None:
    """An unknown error code is refused before any test runs, instead of answering a default."""
    if fault.code is None:
        return None
    try:
        kc.error_code(fault.code)
    except ValueError as exc:
        return f"{exc}; use an error name such as NOT_LEADER_OR_FOLLOWER or REQUEST_TIMED_OUT, or its number"
    return None


async def serve(session: Session) -> None:
    await _Connection(session).run()


class _Connection:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.pending: deque[_Pending] = deque()
        sockname = session.client.writer.get_extra_info("sockname")
        self.host, self.port = str(sockname[0]), int(sockname[1])
        ep = session.endpoint
        self.ids = _TOPIC_IDS.setdefault((ep.target_host, ep.target_port), {})
        self.warned: set[tuple[int, int]] = set()

    async def run(self) -> None:
        requests = asyncio.ensure_future(self._requests())
        responses = asyncio.ensure_future(self._responses())
        running: set[asyncio.Future[Any]] = {requests, responses}
        try:
            while running:
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.result() is True:  # dropped: nothing more to relay
                        return
        finally:
            for task in (requests, responses):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task

    # -- client to server ------------------------------------------------------------------------------

    async def _requests(self) -> bool:
        """Relay requests until the client's EOF; True when a rule dropped the connection."""
        s = self.session
        server = s.server
        frames = Frames(s.client)
        pending = self.pending
        out: list[bytes] = []
        decide = False
        while True:
            try:
                frame = frames.take(8, kc.MAX_REQUEST)
            except NotKafka as exc:
                s.warn(f"kafka proxy: {exc}; the rest of the connection is relayed untouched")
                server.write(b"".join(out) + bytes(frames.buf))
                await s.pipe(s.client, server)
                return False
            if frame is None:
                await flush(server, out)
                if await frames.fill():
                    # Asked once per chunk: a rule installed now applies from the next chunk on.
                    decide = s.faulting or s.recording
                    continue
                server.write(bytes(frames.buf))  # a partial frame before the EOF
                break
            _, key, version, correlation_id = kc.REQUEST_HEAD.unpack_from(frame)
            api = kc.api(key, version)
            if api is None:
                self._unknown(key, version)
                pending.append(_Pending(correlation_id, None))
                out.append(frame)
            elif decide:
                await flush(server, out)
                if await self._request(api, frame, correlation_id):
                    return True
            else:
                if key != kc.PRODUCE or _acks(frame, api) != 0:
                    pending.append(_Pending(correlation_id, api))
                out.append(frame)
        with contextlib.suppress(OSError, RuntimeError):
            if server.writer.can_write_eof():
                server.writer.write_eof()
        return False

    def _unknown(self, key: int, version: int) -> None:
        if (key, version) not in self.warned:
            self.warned.add((key, version))
            self.session.warn(
                f"kafka proxy: {kc.api_name(key)} (api key {key}) v{version} is unknown to kio; "
                "its frames are relayed untouched and never faulted"
            )

    async def _request(self, api: kc.Api, frame: bytes, correlation_id: int) -> bool:
        """Decide one request and act on it; True when the connection was dropped."""
        s = self.session
        entry = _Decided(correlation_id, api)
        try:
            header, offset = kc.request_header(frame, api)
            body = kc.decode(api.request, frame, offset)
        except Exception as exc:  # forwarded undecided; its response is still rewritten
            if (api.key, api.version) not in self.warned:
                self.warned.add((api.key, api.version))
                s.warn(f"kafka proxy: cannot decode a {api.name} v{api.version} request ({exc}); relayed untouched")
            if api.key != kc.PRODUCE or _acks(frame, api) != 0:
                self.pending.append(entry)
            s.server.write(frame)
            await s.server.drain()
            return False
        shape = ka.topic_shape(api)
        topics = ka.request_topics(shape, body, self.ids) if shape is not None else []
        acks0 = api.key == kc.PRODUCE and body.acks == 0
        entry.client_id = header.client_id
        entry.topic = ",".join(sorted({name for name, _ in topics})) or None

        verdicts: list[tuple[str | None, Any, Verdict]] = []
        if s.faulting:
            asked: list[tuple[str | None, Any]] = list(topics) or [(None, None)]
            for name, item in asked:
                verdict = s.decide(method=api.name, topic=name)
                if verdict is not None:
                    verdicts.append((name, item, verdict))
        if verdicts:
            await s.wait(max((v for _, _, v in verdicts), key=lambda v: v.delay))
        errors: list[tuple[str | None, Any, ka.Failure]] = []
        dups: list[Any] = []
        for name, item, verdict in verdicts:
            fault = verdict.rule.fault if verdict.rule is not None else None
            if fault is None:
                continue
            if fault.action is ProxyAction.DROP:
                self._record(entry, "dropped")
                s.client.reset()
                s.server.reset()
                return True
            if fault.action is ProxyAction.ERROR:
                errors.append((name, item, (self._code(fault.code), fault.message)))
            elif fault.action is ProxyAction.DUPLICATE and item is not None:
                dups.append(item)

        try:
            sends, answer = self._act(entry, frame, offset, body, topics, errors, dups)
        except Exception as exc:  # kio could not build what the rule asks for: forward as it came
            s.warn(f"kafka proxy: cannot apply a rule to a {api.name} v{api.version} request ({exc}); forwarded")
            entry.errors, entry.meta = [], {}
            sends, answer = [frame], None
        if answer is not None:
            if not acks0:
                entry.kind, entry.frame = _ANSWER, answer
                self._answer(entry)
                await s.client.drain()
            self._record(entry, "ok" if acks0 else kc.error_name(errors[0][2][0]))
            return False
        if acks0:
            self._record(entry, "ok")
        else:
            self.pending.append(entry)
            if len(sends) > 1:
                self.pending.append(_Pending(correlation_id, api, _DISCARD))
        s.server.write(b"".join(sends))
        await s.server.drain()
        return False

    def _act(
        self,
        entry: _Decided,
        frame: bytes,
        offset: int,
        body: Any,
        topics: list[tuple[str, Any]],
        errors: list[tuple[str | None, Any, ka.Failure]],
        dups: list[Any],
    ) -> tuple[list[bytes], bytes | None]:
        """The frames to forward for a request the rules changed, or the proxy's whole answer to it."""
        api = entry.api
        assert api is not None
        shape = ka.topic_shape(api)
        forward = frame
        if errors and api.key == kc.METADATA:
            entry.meta = {name: failure for name, _, failure in errors}
        elif errors:
            failed = {id(item): failure for _, item, failure in errors if item is not None}
            keep = [item for _, item in topics if id(item) not in failed]
            if not keep or shape is None or shape.groups is not None:
                # Nothing left to forward (or groups, which are not split): the proxy answers it all.
                answer = ka.error_response(api, body, errors[0][2], failed if topics else None)
                return [], kc.response_frame(api, entry.correlation_id, answer)
            entry.errors = [ka.error_topic(shape, item, failed[id(item)]) for _, item in topics if id(item) in failed]
            forward = kc.framed(frame[4:offset], kc.encode(ka.with_topics(shape, body, keep)))
        if not dups:
            return [forward], None
        if len(dups) == len(topics) and not errors:
            return [forward, forward], None
        assert shape is not None
        return [forward, kc.framed(frame[4:offset], kc.encode(ka.with_topics(shape, body, dups)))], None

    def _code(self, text: str | None) -> ErrorCode:
        try:
            return kc.error_code(text)
        except ValueError as exc:
            self.session.warn(f"kafka proxy: {exc}; answering UNKNOWN_SERVER_ERROR")
            return ErrorCode.unknown_server_error

    def _answer(self, entry: _Decided) -> None:
        """Send an answer of ours now, or after the responses to the requests forwarded before it."""
        if self.pending:
            self.pending.append(entry)
        else:
            self.session.client.write(entry.frame)

    def _record(self, entry: _Pending, status: str) -> None:
        if self.session.recording and isinstance(entry, _Decided) and entry.api is not None:
            self.session.record(
                {
                    "method": entry.api.name,
                    "topic": entry.topic,
                    "status": status,
                    "duration_ms": f"{(time.monotonic() - entry.started) * 1000:.1f}",
                    "client_id": entry.client_id,
                }
            )

    # -- server to client ------------------------------------------------------------------------------

    async def _responses(self) -> None:
        s = self.session
        client = s.client
        frames = Frames(s.server)
        pending = self.pending
        out: list[bytes] = []
        while True:
            entry = None
            try:
                frame = frames.take(4, kc.MAX_RESPONSE)
                if frame is not None:
                    (correlation_id,) = kc.LENGTH.unpack_from(frame, 4)
                    entry = self._take(correlation_id, out)
                    if entry is None:
                        raise NotKafka(f"a response (correlation id {correlation_id}) matches no request")
                elif frames.buf:  # checked early: bytes that are not Kafka may never end a frame
                    if not pending:
                        raise NotKafka(f"the server sent {len(frames.buf)} bytes unasked")
                    if len(frames.buf) >= 8:
                        (correlation_id,) = kc.LENGTH.unpack_from(frames.buf, 4)
                        if not any(e.correlation_id == correlation_id for e in pending):
                            raise NotKafka(f"a response (correlation id {correlation_id}) matches no request")
            except NotKafka as exc:
                s.warn(f"kafka proxy: {exc}; the rest of the connection is relayed untouched")
                client.write(b"".join(out) + (frame or b"") + bytes(frames.buf))
                await s.pipe(s.server, client)
                return
            if frame is None:
                await flush(client, out)
                if await frames.fill():
                    continue
                client.write(bytes(frames.buf))
                break
            assert entry is not None
            api = entry.api
            if entry.kind == _DISCARD:
                pass
            elif api is not None and (api.rewrite or (isinstance(entry, _Decided) and entry.changes(s.recording))):
                out.append(self._rewrite(entry, frame))
            else:
                out.append(frame)
            while pending and pending[0].kind == _ANSWER:
                out.append(_answer_frame(pending.popleft()))
        with contextlib.suppress(OSError, RuntimeError):
            if client.writer.can_write_eof():
                client.writer.write_eof()

    def _take(self, correlation_id: int, out: list[bytes]) -> _Pending | None:
        """The pending request a response answers. Requests queued before it that got no response
        (an unknown api that has none) are forgotten; our answers among them go out first."""
        pending = self.pending
        if pending and pending[0].correlation_id == correlation_id and pending[0].kind != _ANSWER:
            return pending.popleft()
        target = next((e for e in pending if e.correlation_id == correlation_id and e.kind != _ANSWER), None)
        if target is None:
            return None
        while True:
            entry = pending.popleft()
            if entry is target:
                return entry
            if entry.kind == _ANSWER:
                out.append(_answer_frame(entry))

    def _rewrite(self, entry: _Pending, frame: bytes) -> bytes:
        """The frame to send the client for a response that may need changing."""
        api = entry.api
        assert api is not None
        try:
            offset = kc.response_body_offset(frame, api)
            if api.key == kc.API_VERSIONS and (code := kc.api_versions_error(frame, offset)):
                self._record(entry, _status(code))
                return frame
            body = kc.decode(api.response, frame, offset)
        except Exception as exc:
            self.session.warn(f"kafka proxy: cannot decode a {api.name} v{api.version} response ({exc}); relayed")
            self._record(entry, "undecoded")
            return frame
        try:
            new = self._changed(entry, body)
        except Exception as exc:  # relay the broker's answer rather than lose the connection
            self.session.warn(f"kafka proxy: cannot rewrite a {api.name} v{api.version} response ({exc}); relayed")
            new = body
        if self.session.recording:
            found = kc.first_error(new)
            self._record(entry, kc.error_name(found) if found is not None else "ok")
        if new is body:
            return frame
        return kc.framed(frame[4:offset], kc.encode(new))

    def _changed(self, entry: _Pending, body: Any) -> Any:
        """A decoded response with the proxy's changes (the same object when there are none)."""
        api = entry.api
        assert api is not None
        decided = entry if isinstance(entry, _Decided) else None
        new = body
        if api.key == kc.API_VERSIONS:
            new = kc.cap_versions(new)
        if api.addresses:
            new = kc.readdress(new, self.host, self.port)
        if api.key == kc.METADATA:
            self.ids.update(kc.metadata_ids(new))
            if decided is not None and decided.meta:
                new = kc.metadata_errors(new, decided.meta)
        if decided is not None and decided.errors:
            shape = ka.topic_shape(api)
            assert shape is not None
            new = ka.add_topics(shape, new, decided.errors)
        return new


def _answer_frame(entry: _Pending) -> bytes:
    assert isinstance(entry, _Decided)
    return entry.frame


def _acks(frame: bytes, api: kc.Api) -> int:
    """The acks of a produce request (-1 when unreadable: a response is expected)."""
    try:
        return kc.produce_acks(frame, api, kc.request_header(frame, api)[1])
    except Exception:
        return -1


def _status(code: int) -> str:
    try:
        return kc.error_name(ErrorCode(code))
    except ValueError:
        return str(code)
