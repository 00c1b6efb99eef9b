"""The client-to-server half of the PostgreSQL proxy, without I/O (see postgres_wire)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from faultbox.model.proxy import ProxyAction
from faultbox.proxy.postgres_sql import (
    DEFAULT_MESSAGE,
    DEFAULT_SQLSTATE,
    raise_statement,
    split_statements,
    statement_text,
    valid_sqlstate,
)
from faultbox.proxy.postgres_wire import (
    BIND,
    CLOSE,
    DESCRIBE_PORTAL,
    DESCRIBE_STATEMENT,
    EXECUTE,
    FUNCTION,
    MAX_MESSAGE,
    PARSE,
    QUERY,
    Control,
    Item,
    Op,
    Parts,
    Rec,
    Segment,
    Wire,
    give_up,
    injected_error,
    message,
    pass_and_hold,
    unpack_len,
)
from faultbox.proxy.rules import Verdict

MAX_STATEMENTS = 10_000  # named statements remembered per connection (oldest forgotten first)

# Message types, as the ints indexing a bytes object gives.
_p, _P, _B, _D, _E, _S, _Q, _C, _F, _X = b"pPBDESQCFX"
_CS_TYPES = frozenset(b"dcf")  # CopyData, CopyDone, CopyFail
_COPY_END = frozenset(b"cf")
_NO_REPLY = frozenset(b"HX")  # Flush, Terminate
_DEALLOCATE_START = frozenset(b"Dd \t\r\n")  # a Query that may be DEALLOCATE or DISCARD ALL

_DEALLOCATE = re.compile(rb'\s*deallocate\s+(?:prepare\s+)?(all|"(?:[^"]|"")+"|[^\s;"]+)\s*;?\s*$', re.I)
_DISCARD_ALL = re.compile(rb"\s*discard\s+all\s*;?\s*$", re.I)

# Items without state are shared: most requests allocate nothing.
_PARSE_ITEM = Item(PARSE)
_BIND_ITEM = Item(BIND)
_CLOSE_ITEM = Item(CLOSE)
_DESCRIBE_STATEMENT_ITEM = Item(DESCRIBE_STATEMENT)
_DESCRIBE_PORTAL_ITEM = Item(DESCRIBE_PORTAL)
_EXECUTE_ITEM = Item(EXECUTE)
_FUNCTION_ITEM = Item(FUNCTION)


class ClientSide:
    """The client-to-server direction: framing, segments, statement names, decisions, rewrites.

    `decide(sql)` asks the rule book about one statement execution; `faulting()` tells whether any
    rule is installed (a segment started without one is not decoded)."""

    def __init__(
        self,
        wire: Wire,
        decide: Callable[[str | None], Verdict | None],
        faulting: Callable[[], bool],
        recording: bool,
        warn: Callable[[str], None],
    ) -> None:
        self.wire = wire
        self.decide = decide
        self.faulting = faulting
        self.recording = recording
        self.warn = warn
        self._held = Parts()
        self.why = ""  # why decoding stopped (after Control.RAW)
        self.in_segment = False
        self.segments = 0  # segments ended so far
        self.last_end = 0  # type of the message that ended the previous segment (0: none to resume)
        self.last_segment: Segment | None = None
        self.segment: Segment | None = None  # the current segment when tracked
        self.simple_copy = False  # the current segment is a simple Query's COPY FROM STDIN data
        self.discard = False  # dropping the client's messages up to its Sync (after an injected error)
        self.statements: dict[bytes, bytes] = {}  # statement name -> SQL, as the client parsed it
        self.unnamed: bytes | None = None
        self.portals: dict[bytes, Rec] = {}

    def feed(self, data: bytes) -> list[Op]:
        if self._held.parts:
            whole = self._held.add(data)
            if whole is None:
                return []
            data = whole
        ops: list[Op] = []
        n = len(data)
        mv: memoryview | None = None
        pos = 0
        start = 0  # the first byte of `data` not yet written or dropped
        try:
            while n - pos >= 5:
                t = data[pos]
                ln = unpack_len(data, pos + 1)[0]
                if ln < 4 or ln > MAX_MESSAGE:
                    self.why = f"a message length of {ln}"
                    return give_up(ops, data, start, self.wire)
                end = pos + 1 + ln
                if end > n:
                    break
                if t == _p:  # authentication exchange: not part of any segment
                    pos = end
                    continue
                if self.discard:
                    if t != _S and t != _X:
                        if start < pos:
                            if mv is None:
                                mv = memoryview(data)
                            ops.append(mv[start:pos])
                        start = pos = end
                        continue
                    self.discard = False
                if not self.in_segment:
                    if t in _NO_REPLY:  # a Flush or Terminate alone opens no segment
                        pos = end
                        continue
                    self._begin(t)
                seg = self.segment
                if seg is None:
                    # Untracked: only what a later tracked segment needs (statement names, segment ends).
                    if t == _S:
                        self._end(t)
                    elif t == _P:
                        self._parse(data, pos, end)
                    elif t == _Q:
                        if data[pos + 5] in _DEALLOCATE_START:
                            self._deallocations(data[pos + 5 : end - 1])
                        self._end(t)
                    elif t == _C:
                        self._close(data, pos, end)
                    elif t == _F:
                        self._end(t)
                    elif t in _COPY_END and self.simple_copy:
                        self._end(0)
                    pos = end
                    continue
                items = seg.items
                if t == _B:
                    verdict, rec = self._bind(data, pos, end)
                    if verdict is None:
                        items.append(_BIND_ITEM)
                    else:
                        if start < pos:
                            if mv is None:
                                mv = memoryview(data)
                            ops.append(mv[start:pos])
                        start = pos
                        if verdict.delay > 0:
                            ops.append(verdict.delay)
                        action = verdict.action
                        if action is ProxyAction.DROP:
                            ops.append(Control.DROP)
                            return ops
                        if action is ProxyAction.ERROR:
                            ops.append(injected_error(self._raise_sql(verdict)))
                            if rec is None:
                                rec = Rec(None, time.monotonic())
                            rec.injected = True
                            items.extend(
                                (
                                    Item(CLOSE, swallow=True),
                                    Item(PARSE, swallow=True),
                                    Item(BIND, swallow=True),
                                    Item(EXECUTE, strip=True, rec=rec),
                                )
                            )
                            self.discard = True
                            start = end
                        else:
                            items.append(_BIND_ITEM)
                elif t == _E:
                    rec = self.portals.get(data[pos + 5 : data.index(0, pos + 5, end)]) if self.recording else None
                    items.append(_EXECUTE_ITEM if rec is None else Item(EXECUTE, rec=rec))
                elif t == _P:
                    self._parse(data, pos, end)
                    items.append(_PARSE_ITEM)
                elif t == _D:
                    items.append(_DESCRIBE_STATEMENT_ITEM if data[pos + 5] == _S else _DESCRIBE_PORTAL_ITEM)
                elif t == _S:
                    self._end(t)
                elif t == _Q:
                    q = self._query(data, pos, end, seg)
                    if q is not None:
                        if start < pos:
                            if mv is None:
                                mv = memoryview(data)
                            ops.append(mv[start:pos])
                        start = pos
                        delay, replaced = q
                        if delay > 0:
                            ops.append(delay)
                        if replaced is Control.DROP:
                            ops.append(Control.DROP)
                            return ops
                        if replaced is not None:
                            ops.append(replaced)
                            start = end
                    self._end(t)
                elif t == _C:
                    self._close(data, pos, end)
                    items.append(_CLOSE_ITEM)
                elif t == _F:
                    items.append(_FUNCTION_ITEM)
                    self._end(t)
                elif t in _COPY_END and self.simple_copy:
                    self._end(0)
                pos = end
        except (ValueError, IndexError) as exc:  # a message without its NUL terminators, or cut short
            self.why = f"a malformed message ({exc})"
            return give_up(ops, data, start, self.wire)
        return pass_and_hold(ops, data, mv, start, pos, self._held)

    # -- segments ------------------------------------------------------------------------------

    def _begin(self, t: int) -> None:
        self.in_segment = True
        last, self.last_end = self.last_end, 0
        if last and t in _CS_TYPES and self.wire.ready_count < self.segments:
            # COPY FROM STDIN data: the server ignored the Sync that ended the previous segment
            # (or, after a simple Query, the data belongs to that Query).
            self.segments -= 1
            self.simple_copy = last != _S
            self.segment = self.last_segment
            return
        self.simple_copy = False
        if not self.wire.lost and (self.recording or self.faulting()):
            seg = Segment(self.segments)
            self.wire.tracked.append(seg)
            self.segment = seg
        else:
            self.segment = None

    def _end(self, t: int) -> None:
        self.segments += 1
        self.in_segment = False
        self.last_end = t
        self.last_segment = self.segment
        self.segment = None
        self.simple_copy = False

    # -- requests ------------------------------------------------------------------------------

    def _text(self, raw: bytes) -> str:
        return raw.decode(self.wire.encoding, "replace")

    def _parse(self, data: bytes, pos: int, end: int) -> None:
        name_end = data.index(0, pos + 5, end)
        sql = data[name_end + 1 : data.index(0, name_end + 1, end)]
        if name_end == pos + 5:
            self.unnamed = sql
            return
        statements = self.statements
        statements[data[pos + 5 : name_end]] = sql
        if len(statements) > MAX_STATEMENTS:
            del statements[next(iter(statements))]

    def _close(self, data: bytes, pos: int, end: int) -> None:
        if data[pos + 5] == _S:
            name = data[pos + 6 : data.index(0, pos + 6, end)]
            if name:
                self.statements.pop(name, None)
            else:
                self.unnamed = None

    def _bind(self, data: bytes, pos: int, end: int) -> tuple[Verdict | None, Rec | None]:
        portal_end = data.index(0, pos + 5, end)
        name_end = data.index(0, portal_end + 1, end)
        raw = self.statements.get(data[portal_end + 1 : name_end]) if name_end > portal_end + 1 else self.unnamed
        sql = statement_text(self._text(raw)) if raw is not None else None
        rec = None
        if self.recording:
            rec = Rec(sql, time.monotonic())
            self.portals[data[pos + 5 : portal_end]] = rec
        verdict = self.decide(sql) if not self.wire.lost and self.faulting() else None
        return verdict, rec

    def _query(self, data: bytes, pos: int, end: int, seg: Segment) -> tuple[float, bytes | Control | None] | None:
        """A simple Query: remember deallocations; when tracked, one decision per statement of its text.
        Returns None to forward it as is, else (delay, replacement message, or DROP, or None)."""
        raw = data[pos + 5 : end - 1]
        if data[pos + 5] in _DEALLOCATE_START:
            self._deallocations(raw)
        text = self._text(raw)
        now = time.monotonic()
        stmts: list[Rec] = []
        deciding = not self.wire.lost and self.faulting()
        delay = 0.0
        hit: tuple[Verdict, int] | None = None
        for begin, content, finish in split_statements(text):
            rec = Rec(text[content:finish], now)
            stmts.append(rec)
            if deciding:
                verdict = self.decide(rec.sql)
                if verdict is not None:
                    delay += verdict.delay
                    if verdict.rule is not None:
                        hit = (verdict, begin)
                        break
        replaced: bytes | Control | None = None
        if hit is not None:
            verdict, begin = hit
            if verdict.action is ProxyAction.DROP:
                replaced = Control.DROP
            elif verdict.action is ProxyAction.ERROR:
                stmts[-1].injected = True
                new = text[:begin] + raise_statement(*self._fault_text(verdict))
                replaced = message(b"Q", new.encode(self.wire.encoding, "replace") + b"\x00")
        seg.items.append(Item(QUERY, stmts=stmts))
        if delay <= 0 and replaced is None:
            return None
        return delay, replaced

    def _deallocations(self, raw: bytes) -> None:
        m = _DEALLOCATE.match(raw)
        if m is not None:
            name = m.group(1)
            if name.lower() == b"all":
                self.statements.clear()
            elif name.startswith(b'"'):
                self.statements.pop(name[1:-1].replace(b'""', b'"'), None)
            else:
                self.statements.pop(name.lower(), None)
        elif _DISCARD_ALL.match(raw):
            self.statements.clear()
            self.unnamed = None

    def _fault_text(self, verdict: Verdict) -> tuple[str, str]:
        assert verdict.rule is not None
        fault = verdict.rule.fault
        sqlstate = fault.sqlstate or DEFAULT_SQLSTATE
        if not valid_sqlstate(sqlstate):
            self.warn(
                f"postgres proxy: {sqlstate!r} is not a SQLSTATE (5 digits or capitals), using {DEFAULT_SQLSTATE}"
            )
            sqlstate = DEFAULT_SQLSTATE
        return sqlstate, fault.message if fault.message is not None else DEFAULT_MESSAGE

    def _raise_sql(self, verdict: Verdict) -> bytes:
        return raise_statement(*self._fault_text(verdict)).encode(self.wire.encoding, "replace")
