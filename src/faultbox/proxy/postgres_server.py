"""The server-to-client half of the PostgreSQL proxy, without I/O (see postgres_wire)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from faultbox.proxy.postgres_wire import (
    ENDS,
    EXECUTE,
    GOES_ON,
    KIND_NAMES,
    MAX_MESSAGE,
    QUERY,
    Item,
    Op,
    Parts,
    Rec,
    Segment,
    Wire,
    error_fields,
    error_message,
    give_up,
    pass_and_hold,
    python_encoding,
    unpack_len,
)

# Message types, as the ints indexing a bytes object gives.
_Z, _S, _E, _D, _C, _I, _s = b"ZSEDCIs"
_ASYNC = frozenset(b"NA")  # NoticeResponse, NotificationResponse: any time
_STATEMENT_DONE = frozenset(b"CI")


class ServerSide:
    """The server-to-client direction: counts ReadyForQuery, and for tracked segments pairs each reply
    with the request it answers. `record` gets one dict per statement execution when recording."""

    def __init__(
        self,
        wire: Wire,
        record: Callable[[dict[str, Any]], None] | None,
        warn: Callable[[str], None],
    ) -> None:
        self.wire = wire
        self.record = record
        self.warn = warn
        self._held = Parts()
        self.why = ""  # why decoding stopped (after Control.RAW)
        self._skip = 0  # bytes of a message already passed on that are still to come
        self._current: Segment | None = None

    def feed(self, data: bytes) -> list[Op]:
        if self._held.parts:
            whole = self._held.add(data)
            if whole is None:
                return []
            data = whole
        n = len(data)
        pos = 0
        if self._skip:
            if self._skip >= n:
                self._skip -= n
                return [data]
            pos = self._skip
            self._skip = 0
        out: list[Op] = []
        mv: memoryview | None = None
        start = 0
        wire = self.wire
        cur = self._current
        if cur is None and wire.tracked:
            cur = self._enter()
        try:
            while n - pos >= 5:
                t = data[pos]
                ln = unpack_len(data, pos + 1)[0]
                if ln < 4 or ln > MAX_MESSAGE:
                    self._current = None
                    self.why = f"a message length of {ln}"
                    return give_up(out, data, start, wire)
                end = pos + 1 + ln
                if cur is None:
                    if t == _Z:
                        wire.ready_count += 1
                        if wire.tracked:
                            cur = self._enter()
                    elif t == _S:
                        if end > n:
                            break
                        self._parameter(data, pos, end)
                    pos = end
                    continue
                if t == _D:  # the bulk of a result: nothing to check
                    pos = end
                    continue
                if t == _Z:
                    self._finish(cur)
                    wire.ready_count += 1
                    cur = self._enter()
                    pos = end
                    continue
                if t in _ASYNC:
                    pos = end
                    continue
                if t == _S:
                    if end > n:
                        break
                    self._parameter(data, pos, end)
                    pos = end
                    continue
                items = cur.items
                if t == _E:
                    if end > n:
                        break
                    new = self._error(items, data[pos + 5 : end])
                    if new is not None:
                        if start < pos:
                            if mv is None:
                                mv = memoryview(data)
                            out.append(mv[start:pos])
                        out.append(new)
                        start = end
                    pos = end
                    continue
                if items:
                    head = items[0]
                    kind = head.kind
                    if t in ENDS[kind]:
                        if head.swallow:
                            if end > n:
                                break
                            if start < pos:
                                if mv is None:
                                    mv = memoryview(data)
                                out.append(mv[start:pos])
                            start = end
                        items.popleft()
                        if kind == EXECUTE and t != _s and head.rec is not None:
                            self._done(head.rec, None, None)
                    elif t in GOES_ON[kind]:
                        if kind == QUERY and t in _STATEMENT_DONE:
                            stmts = head.stmts
                            if stmts is not None and head.at < len(stmts):
                                self._done(stmts[head.at], None, None)
                                head.at += 1
                    else:
                        self._lose(f"a {chr(t)!r} reply while waiting for the reply to a {KIND_NAMES[kind]}", items)
                pos = end
        except (ValueError, IndexError) as exc:
            self._current = None
            self.why = f"a malformed message ({exc})"
            return give_up(out, data, start, self.wire)
        self._current = cur
        if pos > n:
            self._skip = pos - n
            pos = n
        return pass_and_hold(out, data, mv, start, pos, self._held)

    def _enter(self) -> Segment | None:
        """The tracked segment the server answers next, if it is the current one."""
        tracked = self.wire.tracked
        ready = self.wire.ready_count
        while tracked and tracked[0].index < ready:
            tracked.popleft()
            self._lose("a tracked segment was never answered", None)
        if tracked and tracked[0].index == ready:
            return tracked[0]
        return None

    def _finish(self, seg: Segment) -> None:
        """ReadyForQuery: the segment is answered. A Query's statements without an error all ran (even
        if the split found more statements than the server reported)."""
        for item in seg.items:
            if item.kind == QUERY and item.stmts is not None:
                for rec in item.stmts[item.at :]:
                    self._done(rec, None, None)
        seg.items.clear()
        tracked = self.wire.tracked
        if tracked and tracked[0] is seg:
            tracked.popleft()

    def _error(self, items: deque[Item], body: bytes) -> bytes | None:
        """An ErrorResponse: which execution failed, and the message to send instead (None: as is).
        In the extended protocol the server then skips to the Sync, so nothing more is owed."""
        if not items:
            return None
        head = items[0]
        rec: Rec | None
        if head.kind == QUERY:
            stmts = head.stmts or []
            rec = stmts[head.at] if head.at < len(stmts) else None
            strip = rec is not None and rec.injected
            if rec is not None:
                head.at += 1
            items.popleft()
            if head.stmts is not None:
                for skipped in head.stmts[head.at :]:
                    skipped.done = True  # never ran
        else:
            strip = head.strip
            rec = next((item.rec for item in items if item.rec is not None), None)
            items.clear()
        wanted = rec is not None and not rec.done and self.record is not None
        if not strip and not wanted:
            return None
        fields = error_fields(body)
        if rec is not None:
            values = dict(fields)
            self._done(rec, values.get(ord("C"), b"").decode("ascii", "replace") or None, values.get(ord("M"), b""))
        if strip:
            return error_message([(code, value) for code, value in fields if code != ord("W")])
        return None

    def _done(self, rec: Rec, sqlstate: str | None, error: bytes | None) -> None:
        if rec.done:
            return
        rec.done = True
        if self.record is None:
            return
        fields: dict[str, Any] = {
            "method": "query",
            "query": rec.sql,
            "status": "ok" if error is None else "error",
            "duration_ms": round((time.monotonic() - rec.start) * 1000, 3),
        }
        if error is not None:
            fields["sqlstate"] = sqlstate
            fields["message"] = error.decode(self.wire.encoding, "replace")
        if rec.injected:
            fields["injected"] = "true"
        self.record(fields)

    def _parameter(self, data: bytes, pos: int, end: int) -> None:
        body = data[pos + 5 : end]
        if body.startswith(b"client_encoding\x00"):
            value = body[len(b"client_encoding\x00") :].split(b"\x00", 1)[0]
            self.wire.encoding = python_encoding(value.decode("ascii", "replace"))

    def _lose(self, why: str, items: deque[Item] | None) -> None:
        if not self.wire.lost:
            self.warn(f"postgres proxy lost track of the conversation ({why}); no more faults on this connection")
        self.wire.lost = True
        if items is not None:
            items.clear()  # swallow nothing more: pass every reply on as it is
