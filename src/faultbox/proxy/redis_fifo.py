"""What the Redis proxy owes the client: the FIFO of replies per connection, and the connection state
that decides how many replies a request gets (MULTI, CLIENT REPLY, subscriptions, MONITOR, RESP3).

The request side books each forwarded request's replies (`expect`) or an injected reply
(`inject`); the reply side asks how to treat each server message (`classify`) and settles the
FIFO's head when one ends (`answered`, `held`), writing injected replies when their turn comes
(`advance`). No I/O here but the injected reply written at once when nothing is owed before it.
"""

from __future__ import annotations

import time
from collections import deque

from faultbox.model.proxy import ProxyAction, ProxyFault
from faultbox.proxy.redis_resp import aggregate_count, bulk_at, integer_at, key_of, render, value_end
from faultbox.proxy.session import Session, Stream

# What a FIFO entry stands for.
REPLIES = 0  # `n` server replies due, relayed
INJECT = 1  # a reply the proxy writes when its turn comes (no server reply)
_REPLACE = 2  # one server reply due, swallowed: the proxy writes `fault`'s reply instead
_QUEUED = 3  # the reply to a placeholder PING in MULTI: relayed if QUEUED, else replaced by the value
_EXEC = 4  # EXEC's reply, with `subs` (transaction index -> fault) put in place of the server's values
SUBSCRIBE = 5  # a (un)subscribe command: `n` confirmations due (they are pub/sub messages)

# Flags of a REPLIES entry whose reply changes the connection's state.
_HELLO2, _HELLO3, _RESET, _MONITOR = 1, 2, 3, 4

_SUBSCRIBES = frozenset(b"SUBSCRIBE PSUBSCRIBE SSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE SUNSUBSCRIBE".split())
_CONFIRMS = frozenset(b"subscribe psubscribe ssubscribe unsubscribe punsubscribe sunsubscribe".split())
_MESSAGES = frozenset((b"message", b"pmessage", b"smessage"))
_SHARD = frozenset((b"ssubscribe", b"sunsubscribe"))
# Commands that need the codec's attention even when no rule is installed.
STATEFUL = frozenset(b"MULTI EXEC DISCARD HELLO RESET MONITOR CLIENT".split()) | _SUBSCRIBES

# How the reply side treats a message (see ReplyBook.classify).
COUNTED, UNCOUNTED, HOLD, UNSURE = 0, 1, 2, 3


def command(*argv: bytes) -> bytes:
    """A request as a client sends it: an array of bulk strings."""
    return b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in argv)


# Placeholders forwarded instead of a faulted command (see the redis module's docstring).
UNKNOWN = command(b"FAULTBOX-INJECTED-FAILURE")
PING = command(b"PING")
DISCARD = command(b"DISCARD")
_QUEUED_REPLY = b"+QUEUED\r\n"


class _Entry:
    __slots__ = ("fault", "flag", "kind", "n", "rec", "subs")

    def __init__(
        self,
        kind: int,
        n: int = 1,
        fault: ProxyFault | None = None,
        rec: tuple[str, str | None, float] | None = None,
        flag: int = 0,
        subs: dict[int, ProxyFault] | None = None,
    ) -> None:
        self.kind = kind
        self.n = n
        self.fault = fault
        self.rec = rec  # (command, key, start) when the interface records its traffic
        self.flag = flag
        self.subs = subs


class ReplyBook:
    """One connection's FIFO of replies owed, and the state that decides them."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self.client: Stream = session.client
        self.server: Stream = session.server
        self.fifo: deque[_Entry] = deque()
        self.raw = False  # a stream we could not parse: the rest is relayed untouched
        # request side
        self.in_multi = False
        self.tx_index = 0
        self.tx_subs: dict[int, ProxyFault] = {}
        self.reply_off = False
        self.skip_next = False
        # reply side
        self.resp3 = False
        self.pubsub2 = False  # RESP2 subscribed mode: pub/sub arrays answer no request
        self.monitor = False
        self.subs_regular = 0  # subscriptions the server last reported (channels + patterns)
        self.subs_shard = 0
        self.mid_reply = False  # part of a server message is relayed: nothing else may be written
        self.first = 0  # type byte of the message being relayed
        self.counted = True  # whether that message answers a request

    def expect_many(self, count: int) -> None:
        """The common case: `count` more replies due, nothing special about them."""
        fifo = self.fifo
        if fifo:
            tail = fifo[-1]
            if tail.kind == REPLIES and tail.flag == 0 and tail.rec is None:
                tail.n += count
                return
        fifo.append(_Entry(REPLIES, n=count))

    def expect(self, name: bytes, argv: list[bytes], more: int) -> None:
        """Book the replies a forwarded request will get (`more`: its arguments not in argv)."""
        if not name:
            return  # an empty request: Redis answers nothing
        rec: tuple[str, str | None, float] | None = None
        if self.s.recording:
            raw_key = key_of(name, argv)
            key = raw_key.decode("utf-8", "replace") if raw_key is not None else None
            rec = (name.decode("latin-1"), key, time.monotonic())
        if name == b"RESET":  # ends MULTI, CLIENT REPLY OFF, subscriptions, MONITOR and RESP3
            self.in_multi = self.reply_off = self.skip_next = False
            self.tx_subs = {}
            self._book(_Entry(REPLIES, rec=rec, flag=_RESET))
            return
        if self.in_multi:
            # Queued: one QUEUED each (or an error), whatever the command does when EXEC runs it.
            if name == b"EXEC" or name == b"DISCARD":
                self.in_multi = False
                subs, self.tx_subs = self.tx_subs, {}
                if subs and name == b"EXEC" and not self._silenced():
                    self._book(_Entry(_EXEC, rec=rec, subs=subs))
                    return
            elif name != b"MULTI":
                self.tx_index += 1
            self._book_reply(rec)
            return
        if name == b"CLIENT" and len(argv) >= 3 and argv[1].upper() == b"REPLY":
            mode = argv[2].upper()
            if mode == b"ON":
                self.reply_off = self.skip_next = False
                self._book(_Entry(REPLIES, rec=rec))
                return
            if mode == b"OFF" or mode == b"SKIP":
                if mode == b"OFF":
                    self.reply_off = True
                elif not self.reply_off:
                    self.skip_next = True
                self._unanswered(rec)
                return
        if self._silenced():
            self._unanswered(rec)
            return
        if name == b"MULTI":
            self.in_multi = True
            self.tx_index = 0
            self.tx_subs = {}
        elif name in _SUBSCRIBES:
            channels = len(argv) - 1 + more
            if channels or b"UNSUBSCRIBE" in name:  # an argument-less UNSUBSCRIBE is confirmed at least once
                self._book(_Entry(SUBSCRIBE, n=max(1, channels), rec=rec))
                return
        elif name == b"HELLO" and len(argv) >= 2:
            flag = _HELLO3 if argv[1] == b"3" else _HELLO2 if argv[1] == b"2" else 0
            self._book(_Entry(REPLIES, rec=rec, flag=flag))
            return
        elif name == b"MONITOR":
            self._book(_Entry(REPLIES, rec=rec, flag=_MONITOR))
            return
        self._book_reply(rec)

    def _silenced(self) -> bool:
        """Whether CLIENT REPLY keeps the server from answering this request (consumes a SKIP)."""
        if self.reply_off:
            return True
        if self.skip_next:
            self.skip_next = False
            return True
        return False

    def _book_reply(self, rec: tuple[str, str | None, float] | None) -> None:
        if rec is None:
            self.expect_many(1)
        else:
            self._book(_Entry(REPLIES, rec=rec))

    def _unanswered(self, rec: tuple[str, str | None, float] | None) -> None:
        if rec is not None:
            self.s.record({"method": rec[0], "key": rec[1], "status": "ok", "duration_ms": 0, "reply": "off"})

    def _book(self, entry: _Entry) -> None:
        fifo = self.fifo
        fifo.append(entry)
        if len(fifo) == 1 and entry.kind == SUBSCRIBE and not self.resp3:
            self.pubsub2 = True

    def inject(self, name: bytes, fault: ProxyFault) -> bytes | None:
        """Book the reply the proxy gives a faulted request; returns what to forward in its place."""
        skipped = self.skip_next and not self.reply_off
        silent = self._silenced()
        if name == b"EXEC" or name == b"DISCARD":
            # Whatever the client is told, the server's transaction must end too.
            self.in_multi = False
            self.tx_subs = {}
            if not silent:
                self._book(_Entry(_REPLACE, fault=fault))
            return DISCARD
        if self.in_multi and name != b"MULTI" and name != b"RESET":
            if fault.action is ProxyAction.ERROR:
                if not silent:
                    self._book(_Entry(_REPLACE, fault=fault))
                return UNKNOWN
            self.tx_subs[self.tx_index] = fault
            self.tx_index += 1
            if not silent:
                self._book(_Entry(_QUEUED, fault=fault))
            return PING
        if silent:
            # The server spends a CLIENT REPLY SKIP on the next command it gets: it must get one.
            return PING if skipped else None
        if not self.fifo and not self.mid_reply:
            self.client.write(render(fault, self.resp3))
        else:
            self.fifo.append(_Entry(INJECT, fault=fault))
        return None

    def classify(self, buf: bytes | bytearray, pos: int, n: int) -> int:
        """How to treat the message that starts at buf[pos]."""
        kind = buf[pos]
        fifo = self.fifo
        head = fifo[0].kind if fifo else -1
        if kind == 62:  # '>': a push answers no request, unless it confirms a (un)subscribe
            return HOLD if head == SUBSCRIBE else UNCOUNTED
        if self.pubsub2 and kind == 42:  # '*' while subscribed: a message, or a reply?
            return HOLD
        if self.monitor and kind == 43:  # '+': a MONITOR line starts with its timestamp
            if pos + 1 >= n:
                return UNSURE
            if 48 <= buf[pos + 1] <= 57:
                return UNCOUNTED
        if head in (_REPLACE, _QUEUED, _EXEC):
            return HOLD
        return COUNTED

    def answered(self, first: int) -> None:
        """A reply (of type `first`) to the request at the FIFO's head was relayed."""
        fifo = self.fifo
        head = fifo[0]
        if head.kind == REPLIES:
            if head.flag or head.rec is not None:
                self._settle(head, first)
            if head.n > 1:
                head.n -= 1
                return
        elif head.rec is not None:  # a (un)subscribe refused with an error
            self._record(head.rec, first)
        fifo.popleft()
        if fifo and fifo[0].kind == SUBSCRIBE and not self.resp3:
            self.pubsub2 = True

    def _settle(self, head: _Entry, first: int) -> None:
        if head.rec is not None:
            self._record(head.rec, first)
        if first == 45 or first == 33:  # an error: the connection's state did not change
            return
        flag = head.flag
        if flag == _HELLO3:
            self.resp3 = True
        elif flag == _HELLO2:
            self.resp3 = False
        elif flag == _MONITOR:
            self.monitor = True
        elif flag == _RESET:
            self.resp3 = self.pubsub2 = self.monitor = False
            self.subs_regular = self.subs_shard = 0

    def _record(self, rec: tuple[str, str | None, float], first: int) -> None:
        self.s.record(
            {
                "method": rec[0],
                "key": rec[1],
                "status": "error" if first == 45 or first == 33 else "ok",
                "duration_ms": round((time.monotonic() - rec[2]) * 1000, 3),
            }
        )

    def advance(self, out: list[bytes | bytearray]) -> None:
        """Write the injected replies whose turn has come."""
        fifo = self.fifo
        while fifo and fifo[0].kind == INJECT:
            fault = fifo.popleft().fault
            assert fault is not None
            out.append(render(fault, self.resp3))
        if fifo and fifo[0].kind == SUBSCRIBE and not self.resp3:
            self.pubsub2 = True

    def held(self, msg: bytes | bytearray, out: list[bytes | bytearray]) -> None:
        """A held message is complete: relay, swallow or rewrite it."""
        fifo = self.fifo
        first = msg[0]
        if first == 62 or (self.pubsub2 and first == 42):
            count, p = aggregate_count(msg)
            kind, p = bulk_at(msg, p) if count > 0 else (None, p)
            if kind in _CONFIRMS:
                out.append(msg)
                self._confirmed(kind, msg, p)
                self.advance(out)
                return
            if first == 62 or kind in _MESSAGES:
                out.append(msg)  # answers no request
                return
        head = fifo[0] if fifo else None
        if head is None or head.kind == REPLIES or head.kind == SUBSCRIBE:
            out.append(msg)
            if head is not None:
                self.answered(first)
        else:
            fault = head.fault
            if head.kind == _EXEC:
                assert head.subs is not None
                out.append(self._exec_reply(msg, head.subs))
                if head.rec is not None:
                    self._record(head.rec, first)
            elif head.kind == _QUEUED and msg == _QUEUED_REPLY:
                out.append(msg)  # its value goes into EXEC's reply
            else:
                assert fault is not None
                out.append(render(fault, self.resp3))
            fifo.popleft()
        self.advance(out)

    def _confirmed(self, kind: bytes, msg: bytes | bytearray, pos: int) -> None:
        """A (un)subscribe confirmation: [kind, channel, subscriptions left]."""
        _, pos = bulk_at(msg, pos)
        left = integer_at(msg, pos)
        if left is not None:
            if kind in _SHARD:
                self.subs_shard = left
            else:
                self.subs_regular = left
        fifo = self.fifo
        if fifo and fifo[0].kind == SUBSCRIBE:
            head = fifo[0]
            if head.n > 1:
                head.n -= 1
            else:
                fifo.popleft()
                if head.rec is not None:
                    self._record(head.rec, 62)
        if self.pubsub2 and not self.subs_regular and not self.subs_shard and not (fifo and fifo[0].kind == SUBSCRIBE):
            self.pubsub2 = False

    def _exec_reply(self, msg: bytes | bytearray, subs: dict[int, ProxyFault]) -> bytes | bytearray:
        """EXEC's array with the injected responses in place of the placeholders' values."""
        count, pos = aggregate_count(msg)
        if count <= 0:
            return msg  # EXECABORT, or nil when a WATCHed key changed
        parts = [msg[:pos]]
        for i in range(count):
            end = value_end(msg, pos)
            fault = subs.get(i)
            parts.append(msg[pos:end] if fault is None else render(fault, self.resp3))
            pos = end
        return b"".join(parts)
