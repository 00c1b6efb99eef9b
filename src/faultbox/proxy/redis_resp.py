"""RESP framing for the Redis proxy: where a client request and a server reply end, which command
and key a request names, and the replies the proxy writes itself.

Everything here only finds boundaries in the bytes; relayed traffic is never decoded into values
and encoded again. Requests are arrays of bulk strings or inline command lines; replies may be any
RESP2 or RESP3 type (simple string, error, integer, bulk, array, null, double, boolean, blob
error, verbatim, big number, map, set, attribute, push). RESP3 streamed aggregates (`$?`, `*?`)
are not parsed: Redis never sends them, and a stream that has one is relayed untouched.
"""

from __future__ import annotations

from faultbox.model.proxy import ProxyAction, ProxyFault

Buffer = bytes | bytearray

CRLF = b"\r\n"
# Redis refuses an inline request line longer than this (PROTO_INLINE_MAX_SIZE), and so do we:
# past it the stream is not one we understand.
INLINE_MAX = 64 * 1024
# A RESP header line ($len, *count, :int, +simple, -error) longer than this is not RESP.
HEADER_MAX = 64 * 1024


class ProtocolError(ValueError):
    """The bytes are not RESP as this codec knows it."""


# The argv index of a command's first key, for commands that take one. A command that is not
# listed carries no key, so `key=` rules never match it (PING, AUTH, HELLO, CLIENT, SELECT, INFO,
# MULTI, EXEC, PUBLISH, SUBSCRIBE, SCAN, KEYS, FLUSHALL, ...).
_KEY_1 = (
    # strings
    "GET SET SETNX SETEX PSETEX GETSET GETDEL GETEX APPEND STRLEN INCR DECR INCRBY DECRBY INCRBYFLOAT "
    "GETRANGE SUBSTR SETRANGE GETBIT SETBIT BITCOUNT BITPOS BITFIELD BITFIELD_RO LCS MGET MSET MSETNX "
    # any key
    "DEL UNLINK EXISTS TOUCH TYPE TTL PTTL EXPIRE PEXPIRE EXPIREAT PEXPIREAT EXPIRETIME PEXPIRETIME PERSIST "
    "RENAME RENAMENX MOVE COPY DUMP RESTORE SORT SORT_RO WATCH "
    # hashes
    "HSET HSETNX HGET HMSET HMGET HDEL HEXISTS HGETALL HKEYS HVALS HLEN HINCRBY HINCRBYFLOAT HSTRLEN "
    "HRANDFIELD HSCAN "
    # lists
    "LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LRANGE LLEN LINDEX LSET LREM LTRIM LINSERT LPOS RPOPLPUSH LMOVE "
    "BLPOP BRPOP BRPOPLPUSH BLMOVE "
    # sets
    "SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SPOP SRANDMEMBER SMOVE SINTER SUNION SDIFF SINTERSTORE "
    "SUNIONSTORE SDIFFSTORE SSCAN "
    # sorted sets
    "ZADD ZREM ZSCORE ZMSCORE ZINCRBY ZCARD ZCOUNT ZLEXCOUNT ZRANGE ZRANGESTORE ZRANGEBYSCORE ZRANGEBYLEX "
    "ZREVRANGE ZREVRANGEBYSCORE ZREVRANGEBYLEX ZRANK ZREVRANK ZREMRANGEBYRANK ZREMRANGEBYSCORE "
    "ZREMRANGEBYLEX ZPOPMIN ZPOPMAX BZPOPMIN BZPOPMAX ZRANDMEMBER ZSCAN ZUNIONSTORE ZINTERSTORE ZDIFFSTORE "
    # streams, hyperloglogs, geo
    "XADD XRANGE XREVRANGE XLEN XDEL XTRIM XACK XPENDING XCLAIM XAUTOCLAIM XSETID "
    "PFADD PFCOUNT PFMERGE "
    "GEOADD GEODIST GEOHASH GEOPOS GEOSEARCH GEOSEARCHSTORE GEORADIUS GEORADIUSBYMEMBER GEORADIUS_RO "
    "GEORADIUSBYMEMBER_RO"
)
# Subcommand containers whose subcommand takes the key (OBJECT ENCODING k, XGROUP CREATE k g id),
# BITOP op dest, and the numkeys commands (LMPOP 2 k1 k2 LEFT).
_KEY_2 = "OBJECT MEMORY XINFO XGROUP BITOP LMPOP ZMPOP SINTERCARD ZUNION ZINTER ZDIFF ZINTERCARD"
_KEY_3 = "BLMPOP BZMPOP"
KEY_AT: dict[bytes, int] = {
    **{name.encode(): 1 for name in _KEY_1.split()},
    **{name.encode(): 2 for name in _KEY_2.split()},
    **{name.encode(): 3 for name in _KEY_3.split()},
}
# script numkeys key...: a key only when numkeys > 0.
_SCRIPTS = frozenset(b"EVAL EVALSHA EVAL_RO EVALSHA_RO FCALL FCALL_RO".split())
# XREAD [COUNT n] [BLOCK ms] STREAMS key...: the key follows the STREAMS keyword.
_STREAMS = frozenset((b"XREAD", b"XREADGROUP"))

# Commands whose arguments the codec reads even when no rule is installed: they change how many
# replies the connection gets, or in which protocol (argv count the codec needs, name included).
_STATE_ARGS = {b"CLIENT": 3, b"HELLO": 2}


def wanted(name: bytes, faulting: bool) -> int:
    """How many leading arguments (the command name included) must be read before a request can
    be decided; 0 means all of them."""
    want = _STATE_ARGS.get(name, 1)
    if faulting:
        at = KEY_AT.get(name)
        if at is not None:
            return max(want, at + 1)
        if name in _SCRIPTS:
            return 4
        if name in _STREAMS:
            return 0
    return want


def key_of(name: bytes, argv: list[bytes]) -> bytes | None:
    """The first key of a request, when its command takes one (see KEY_AT)."""
    at = KEY_AT.get(name)
    if at is None:
        if name in _SCRIPTS:
            if len(argv) > 3 and argv[2] not in (b"0", b"-0"):
                return argv[3]
            return None
        if name in _STREAMS:
            for i in range(1, len(argv) - 1):
                if argv[i].upper() == b"STREAMS":
                    return argv[i + 1]
        return None
    return argv[at] if at < len(argv) else None


def parse_head(buf: Buffer, pos: int, n: int, faulting: bool) -> tuple[int, int, list[bytes]] | None:
    """The start of the request at buf[pos:n]: (end of what was read, bulk arguments left
    unread, the arguments read). Reads as many arguments as `wanted` asks, so a large value
    further on can stream through without being buffered. None: not enough bytes yet.

    An inline request is a whole line, read at once (its arguments are split on whitespace,
    without Redis's quoting rules)."""
    if buf[pos] != 42:  # not '*': an inline command
        eol = buf.find(b"\n", pos, n)
        if eol < 0:
            if n - pos > INLINE_MAX:
                raise ProtocolError("inline request line too long")
            return None
        return eol + 1, 0, bytes(buf[pos:eol]).split()
    count, p = _length(buf, pos, n)
    if p < 0:
        return None
    if count <= 0:  # Redis skips an empty array: no command, no reply
        return p, 0, []
    argv: list[bytes] = []
    want = 1
    while True:
        if p >= n:
            return None
        if buf[p] != 36:  # '$'
            raise ProtocolError(f"request argument is not a bulk string: {bytes(buf[p : p + 16])!r}")
        size, start = _length(buf, p, n)
        if start < 0:
            return None
        if size < 0:
            raise ProtocolError("negative bulk length in a request")
        p = start + size + 2
        if p > n:
            return None
        argv.append(bytes(buf[start : p - 2]))
        got = len(argv)
        if got == 1:
            want = wanted(argv[0].upper(), faulting) or count
        if got >= want or got == count:
            return p, count - got, argv


def _length(buf: Buffer, pos: int, n: int) -> tuple[int, int]:
    """The number on the header line at buf[pos] (after its type byte), and where the line ends;
    (0, -1) when the line is incomplete."""
    if pos + 3 < n and buf[pos + 2] == 13 and 48 <= buf[pos + 1] <= 57:
        return buf[pos + 1] - 48, pos + 4
    eol = buf.find(CRLF, pos, n)
    if eol < 0:
        if n - pos > HEADER_MAX:
            raise ProtocolError("request header line too long")
        return 0, -1
    return int(buf[pos + 1 : eol]), eol + 2


# Reply type bytes.
_BULK = frozenset(b"$!=")  # bulk string, blob error, verbatim: a length, then that many bytes
_AGG = frozenset(b"*~>")  # array, set, push: a count of values
_PAIRS = frozenset(b"%|")  # map, attribute: a count of key/value pairs
_LINE = frozenset(b"+-:,#_(")  # simple string, error, integer, double, boolean, null, big number
_ATTR = 124  # '|'


class ReplyScanner:
    """Finds where each top-level reply ends, across reads of any size.

    `scan` resumes where it left off: in a large bulk string it only counts bytes, so a reply of
    any size can be relayed as it arrives. An attribute (`|`) is not a value of its own: it annotates
    the value after it, so it neither ends a reply nor counts as an element of an aggregate."""

    __slots__ = ("_hint", "_skip", "_stack")

    def __init__(self) -> None:
        # Values still expected by each open aggregate, innermost last; an attribute's count is
        # stored negated so that its end does not count as a value of its parent.
        self._stack: list[int] = []
        self._skip = 0  # bytes of a bulk payload (and its CRLF) still to pass
        self._hint = 0  # how far a header line was already searched for its CRLF

    @property
    def idle(self) -> bool:
        """At the boundary between two replies."""
        return not self._stack and not self._skip

    def scan(self, buf: Buffer, pos: int, n: int, limit: int = 1, pushes: bool = True) -> tuple[int, int]:
        """Advance over buf[pos:n] until `limit` replies have ended, or the bytes ran out, or (with
        pushes=False) a push is next. Returns (position, replies ended); position is where the
        next call resumes (when the bytes ran out: the start of an incomplete header line, which
        the caller must keep)."""
        stack = self._stack
        skip = self._skip
        hint = self._hint
        self._hint = 0
        done = 0
        find = buf.find
        while True:
            if skip:
                left = n - pos
                if left < skip:
                    self._skip = skip - left
                    return n, done
                pos += skip
                skip = 0
            else:
                if pos >= n:
                    self._skip = 0
                    return pos, done
                kind = buf[pos]
                if kind == 36 and pos + 3 < n and buf[pos + 2] == 13 and 48 <= buf[pos + 1] <= 57:
                    # A bulk string of under 10 bytes: its length is one digit (as in skim_requests).
                    skip = buf[pos + 1] - 46
                    pos += 4
                    hint = 0
                    continue
                if kind == 62 and not pushes and not stack:
                    self._skip = 0
                    return pos, done
                eol = find(CRLF, pos + hint, n)
                if eol < 0:
                    if n - pos > HEADER_MAX:
                        raise ProtocolError("reply line too long")
                    self._hint = max(0, n - pos - 1)
                    self._skip = 0
                    return pos, done
                hint = 0
                if kind in _LINE:
                    pos = eol + 2
                elif kind in _BULK:
                    size = int(buf[pos + 1 : eol])
                    pos = eol + 2
                    if size >= 0:
                        skip = size + 2
                        continue
                elif kind in _AGG or kind in _PAIRS:
                    count = int(buf[pos + 1 : eol])
                    pos = eol + 2
                    if count > 0:
                        if kind in _PAIRS:
                            count *= 2
                        stack.append(-count if kind == _ATTR else count)
                        continue
                    if kind == _ATTR:
                        continue
                else:
                    raise ProtocolError(f"unknown reply type {bytes(buf[pos : pos + 16])!r}")
            # A value ended: count it against the aggregates it closes.
            while stack:
                left = stack[-1]
                if left > 1:
                    stack[-1] = left - 1
                    break
                if left < -1:
                    stack[-1] = left + 1
                    break
                stack.pop()
                if left < 0:
                    break  # an attribute ended: the value it annotates comes next
            else:
                done += 1
                if done >= limit:
                    self._skip = 0
                    return pos, done


def value_end(buf: Buffer, pos: int, n: int | None = None) -> int:
    """Where the complete value at buf[pos:] ends; -1 when it is not complete."""
    end, done = ReplyScanner().scan(buf, pos, len(buf) if n is None else n)
    return end if done else -1


def skim_requests(buf: Buffer, pos: int, n: int, special: frozenset[bytes]) -> tuple[int, int]:
    """The fast path of the request side: pass over complete requests whose command is not in
    `special`, only to count them. Returns (where it stopped, requests passed); it stops at anything
    else (an incomplete or inline request, a special command, something malformed) for the caller
    to handle one request at a time.

    Lengths of one digit are read without searching for the line end: like Redis, the CR after
    the digits ends a length and the LF after it is taken as given."""
    count = 0
    find = buf.find
    while pos + 3 < n and buf[pos] == 42:  # '*'
        if buf[pos + 2] == 13:
            argc = buf[pos + 1] - 48
            if not 0 < argc <= 9:
                break
            p = pos + 4
        else:
            eol = find(CRLF, pos, n)
            if eol < 0:
                break
            argc = int(buf[pos + 1 : eol])
            if argc <= 0:
                break
            p = eol + 2
        name = True
        while argc:
            if p + 3 >= n or buf[p] != 36:  # '$'
                break
            if buf[p + 2] == 13:
                size = buf[p + 1] - 48
                if not 0 <= size <= 9:
                    break
                start = p + 4
            else:
                eol = find(CRLF, p, n)
                if eol < 0:
                    break
                size = int(buf[p + 1 : eol])
                if size < 0:
                    break
                start = eol + 2
            p = start + size + 2
            if p > n:
                break
            if name:
                if buf[start : p - 2].upper() in special:
                    break
                name = False
            argc -= 1
        if argc:
            break
        pos = p
        count += 1
    return pos, count


def aggregate_count(msg: Buffer) -> tuple[int, int]:
    """(count, position of the first element) of an array/set/push reply; count -1 for nil."""
    eol = msg.find(CRLF)
    if eol < 0 or msg[0] not in _AGG:
        return -1, 0
    return int(msg[1:eol]), eol + 2


def bulk_at(msg: Buffer, pos: int) -> tuple[bytes | None, int]:
    """The bulk string at msg[pos:] (None if it is another type) and where the value ends."""
    end = value_end(msg, pos)
    if end < 0:
        return None, len(msg)
    if msg[pos] != 36:
        return None, end
    eol = msg.find(CRLF, pos)
    if int(msg[pos + 1 : eol]) < 0:
        return None, end
    return bytes(msg[eol + 2 : end - 2]), end


def integer_at(msg: Buffer, pos: int) -> int | None:
    if pos < len(msg) and msg[pos] == 58:  # ':'
        eol = msg.find(CRLF, pos)
        if eol > 0:
            return int(msg[pos + 1 : eol])
    return None


def render(fault: ProxyFault, resp3: bool) -> bytes:
    """The reply the proxy writes for an `error` or `response` fault."""
    if fault.action is ProxyAction.ERROR:
        text = fault.message or fault.body or "ERR injected fault"
        # The error is one line: a CR or LF inside it would end the reply early.
        line = text.replace("\r", " ").replace("\n", " ").encode()
        return b"-" + line + CRLF
    if fault.nil:
        return b"_\r\n" if resp3 else b"$-1\r\n"
    if fault.body is None:
        return b"+OK\r\n"
    data = fault.body.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)
