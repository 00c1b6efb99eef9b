"""What the two halves of the PostgreSQL proxy share (postgres_client: requests, decisions and
rewrites; postgres_server: replies), all without I/O.

Both directions are cut into messages (type byte, int32 length counting itself, body). A *segment*
is what the client sends up to a Sync, a simple Query or a FunctionCall: the server answers each with
exactly one ReadyForQuery, so counting segments on one side and ReadyForQuery on the other keeps the
two in step without any lock-step. When a segment starts while a rule is installed (or the interface
records), it is *tracked*: every client message that owes a reply pushes an `Item`, and the server
side pops them as replies arrive. That is what lets the proxy swallow the replies to the messages it
injected, strip the PL/pgSQL context of its own ErrorResponse, and time each statement. Untracked
segments cost one comparison per server message (is it a ReadyForQuery?).

The copy-in exception: a Sync the server reads while in COPY FROM STDIN is ignored, so a segment
whose first message is CopyData/CopyDone/CopyFail is the continuation of the previous one.
"""

from __future__ import annotations

import codecs
import enum
import struct
from collections import deque

_LEN = struct.Struct("!I")
unpack_len = _LEN.unpack_from
# The server refuses messages of 1 GB or more; a bigger length means we are not reading v3.
MAX_MESSAGE = 0x3FFFFFFF

# What the proxy's own statement is called on the server. It is closed before each use, so at most
# one lingers per connection; client statements are never touched.
INJECTED_NAME = b"faultbox_injected_fault"


class Control(enum.Enum):
    DROP = "drop"  # reset both sides: the request was dropped
    RAW = "raw"  # undecodable: what was returned is forwarded, the rest must be relayed untouched


# What ClientSide.feed asks the connection to do, in order: write bytes to the server, sleep
# (a float, seconds), or a Control.
Op = bytes | memoryview | float | Control


# What a client message owes: the kinds of Item.
PARSE, BIND, CLOSE, DESCRIBE_STATEMENT, DESCRIBE_PORTAL, EXECUTE, QUERY, FUNCTION = range(8)
KIND_NAMES = ("Parse", "Bind", "Close", "Describe", "Describe", "Execute", "Query", "FunctionCall")

# Per kind: the reply types that end it, and those it may send before that.
ENDS: tuple[frozenset[int], ...] = (
    frozenset(b"1"),
    frozenset(b"2"),
    frozenset(b"3"),
    frozenset(b"Tn"),
    frozenset(b"Tn"),
    frozenset(b"CIs"),
    frozenset(),  # a simple Query ends with its ReadyForQuery
    frozenset(b"V"),
)
GOES_ON: tuple[frozenset[int], ...] = (
    frozenset(),
    frozenset(),
    frozenset(),
    frozenset(b"t"),
    frozenset(),
    frozenset(b"DGHWdc"),
    frozenset(b"TDCIGHWdc"),
    frozenset(),
)


class Rec:
    """One statement execution: its text, when the client sent it, whether its reply is in."""

    __slots__ = ("done", "injected", "sql", "start")

    def __init__(self, sql: str | None, start: float, injected: bool = False) -> None:
        self.sql = sql
        self.start = start  # time.monotonic() when the client sent it
        self.done = False
        self.injected = injected


class Item:
    """A reply the server owes: `swallow` for replies to messages the proxy injected, `strip` for the
    ErrorResponse the proxy provoked. A QUERY item holds the statements of its text, in order."""

    __slots__ = ("at", "kind", "rec", "stmts", "strip", "swallow")

    def __init__(
        self,
        kind: int,
        *,
        swallow: bool = False,
        strip: bool = False,
        rec: Rec | None = None,
        stmts: list[Rec] | None = None,
    ) -> None:
        self.kind = kind
        self.swallow = swallow
        self.strip = strip
        self.rec = rec
        self.stmts = stmts
        self.at = 0


class Segment:
    """A tracked segment: the replies still owed, oldest first. `index` counts the segments before it."""

    __slots__ = ("index", "items")

    def __init__(self, index: int) -> None:
        self.index = index
        self.items: deque[Item] = deque()


class Wire:
    """What the two directions of one connection share."""

    __slots__ = ("encoding", "lost", "ready_count", "tracked")

    def __init__(self) -> None:
        self.tracked: deque[Segment] = deque()
        self.encoding = "utf-8"  # Python's name for the connection's client_encoding
        # ReadyForQuery messages seen, minus the one that ends the startup: the index of the segment
        # the server is answering now.
        self.ready_count = -1
        # Our model of the conversation failed: track and inject nothing more on this connection.
        self.lost = False


def message(kind: bytes, body: bytes) -> bytes:
    return kind + _LEN.pack(len(body) + 4) + body


def python_encoding(pg_name: str) -> str:
    """Python's codec for a PostgreSQL client_encoding (UTF-8 when Python has none)."""
    name = pg_name.strip().lower()
    name = {"sql_ascii": "latin-1", "unicode": "utf-8", "koi8": "koi8_r", "win": "cp1251", "alt": "cp866"}.get(
        name, name
    )
    if name.startswith("win") and name[3:].isdigit():
        name = "cp" + name[3:]
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "utf-8"


def error_fields(body: bytes) -> list[tuple[int, bytes]]:
    """The (code, value) fields of an ErrorResponse or NoticeResponse body."""
    return [(part[0], part[1:]) for part in body.split(b"\x00") if part]


def error_message(fields: list[tuple[int, bytes]]) -> bytes:
    return message(b"E", b"".join(bytes((code,)) + value + b"\x00" for code, value in fields) + b"\x00")


def injected_error(sql: bytes) -> bytes:
    """The extended-protocol messages that run `sql` (a DO statement) as the proxy's own statement."""
    name = INJECTED_NAME + b"\x00"
    return (
        message(b"C", b"S" + name)  # "it is not an error to Close a nonexistent statement"
        + message(b"P", name + sql + b"\x00\x00\x00")
        + message(b"B", b"\x00" + name + b"\x00\x00\x00\x00\x00\x00")
        + message(b"E", b"\x00\x00\x00\x00\x00")
    )


class Parts:
    """An incomplete message (or header) waiting for its missing bytes, joined once."""

    __slots__ = ("have", "need", "parts")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.have = 0
        self.need = 0

    def hold(self, rest: bytes, need: int) -> None:
        self.parts = [rest]
        self.have = len(rest)
        self.need = need

    def add(self, data: bytes) -> bytes | None:
        """`data` appended; the whole buffer once the missing bytes are in, else None."""
        self.parts.append(data)
        self.have += len(data)
        if self.have < self.need:
            return None
        whole = b"".join(self.parts)
        self.parts = []
        return whole


def pass_and_hold(ops: list[Op], data: bytes, mv: memoryview | None, start: int, pos: int, held: Parts) -> list[Op]:
    """Pass on the whole messages of `data[start:pos]` (the buffer itself when that is all of it)
    and hold an incomplete message at the end until its missing bytes arrive."""
    n = len(data)
    if start < pos:
        if start == 0 and pos == n:
            ops.append(data)
        else:
            ops.append((mv or memoryview(data))[start:pos])
    if pos < n:
        rest = data[pos:]
        held.hold(rest, 5 if len(rest) < 5 else 1 + unpack_len(rest, 1)[0])
    return ops


def give_up(ops: list[Op], data: bytes, start: int, wire: Wire) -> list[Op]:
    """Stop decoding: pass on what is left (the peer will complain itself if it is malformed)."""
    wire.lost = True
    if start < len(data):
        ops.append(data[start:])
    ops.append(Control.RAW)
    return ops
