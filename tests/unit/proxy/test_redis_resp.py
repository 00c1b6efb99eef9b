"""RESP framing of the Redis proxy: boundaries found whatever way the bytes are split, request heads,
the key table, and the replies the proxy writes itself.

Blob errors (`!`) get their proof here: redis-server never sends one, so no integration test can."""

from __future__ import annotations

import itertools

import pytest

from faultbox.model.proxy import ProxyAction, ProxyFault
from faultbox.proxy.redis_fifo import DISCARD, PING, STATEFUL, UNKNOWN
from faultbox.proxy.redis_resp import (
    ProtocolError,
    ReplyScanner,
    key_of,
    parse_head,
    render,
    skim_requests,
    value_end,
)

# One reply of every RESP2 and RESP3 type, some nested, as redis-server writes them.
REPLIES = [
    b"+OK\r\n",
    b"-ERR wrong\r\n",
    b":-42\r\n",
    b"$5\r\nhello\r\n",
    b"$0\r\n\r\n",
    b"$-1\r\n",
    b"$12\r\nline\r\nbreaks\r\n",  # a payload holding CRLF
    b"*-1\r\n",
    b"*0\r\n",
    b"*3\r\n:1\r\n$1\r\na\r\n*1\r\n+x\r\n",
    b"_\r\n",
    b",3.141\r\n",
    b"#t\r\n",
    b"!21\r\nSYNTAX invalid syntax\r\n",
    b"=15\r\ntxt:Some string\r\n",
    b"(3492890328409238509324850943850943825024385\r\n",
    b"%2\r\n+first\r\n:1\r\n+second\r\n%1\r\n$1\r\nk\r\n_\r\n",
    b"~2\r\n+a\r\n#f\r\n",
    b"|1\r\n+key-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n$4\r\nreal\r\n",  # attribute, then its value
    b"*2\r\n|1\r\n+ttl\r\n:3\r\n:1\r\n:2\r\n",  # an attribute inside an array is not an element
    b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nhi!\r\n",
    b"%0\r\n",
    b"$" + b"%d" % 70000 + b"\r\n" + b"x" * 70000 + b"\r\n",  # longer than one read
]
STREAM = b"".join(REPLIES)
ENDS = [sum(len(r) for r in REPLIES[: i + 1]) for i in range(len(REPLIES))]


def _ends_when_split(data: bytes, cuts: list[int]) -> list[int]:
    """Feed `data` to a scanner in pieces cut at `cuts`, the way the proxy does (keeping an
    incomplete header line for the next read); returns the absolute end of each reply."""
    scanner = ReplyScanner()
    ends: list[int] = []
    kept = b""
    base = 0  # absolute offset of kept[0]
    edges = [0, *cuts, len(data)]
    for a, b in itertools.pairwise(edges):
        buf = kept + data[a:b]
        pos = 0
        while pos < len(buf):
            pos, done = scanner.scan(buf, pos, len(buf))
            if not done:
                break
            ends.append(base + pos)
        kept = buf[pos:]
        base += pos
    return ends


def test_every_reply_type_ends_where_it_should() -> None:
    assert _ends_when_split(STREAM, []) == ENDS


@pytest.mark.parametrize("step", [1, 2, 3, 7, 13, 64])
def test_boundaries_do_not_depend_on_how_reads_split_the_stream(step: int) -> None:
    head = STREAM[: ENDS[-2]]  # all but the large one: every split point of it
    cuts = list(range(step, len(head), step))
    assert _ends_when_split(head, cuts) == ENDS[:-1]


def test_a_large_reply_streams_without_rescanning() -> None:
    big = REPLIES[-1]
    assert _ends_when_split(big, list(range(1000, len(big), 1000))) == [len(big)]


def test_limit_counts_replies_and_stops_before_a_push() -> None:
    scanner = ReplyScanner()
    data = b"+a\r\n:1\r\n>2\r\n+x\r\n+y\r\n$1\r\nb\r\n"
    pos, done = scanner.scan(data, 0, len(data), 10, False)
    assert (pos, done) == (8, 2)  # stopped before the push
    pos, done = scanner.scan(data, pos, len(data), 1)
    assert data[:pos].endswith(b"+y\r\n") and done == 1
    assert scanner.scan(data, pos, len(data), 5) == (len(data), 1)


def test_value_end_and_garbage() -> None:
    assert value_end(b"*2\r\n$1\r\na\r\n", 0) == -1
    assert value_end(b"*2\r\n$1\r\na\r\n:1\r\n", 0) == 15
    with pytest.raises(ProtocolError):
        ReplyScanner().scan(b"?what\r\n", 0, 7)
    with pytest.raises(ValueError):
        ReplyScanner().scan(b"$x\r\n", 0, 4)


REQUESTS = [
    b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n",
    b"*3\r\n$3\r\nset\r\n$10\r\nkey:123456\r\n$11\r\nvalue\r\nwith\r\n",
    b"PING\r\n",
    b"*1\r\n$5\r\nMULTI\r\n",
    b"*0\r\n",
    b"*4\r\n$4\r\nHSET\r\n$1\r\nh\r\n$1\r\nf\r\n$150\r\n" + b"v" * 150 + b"\r\n",
]


def test_the_skimmer_passes_whole_requests_only() -> None:
    plain = [r for r in REQUESTS if r.startswith(b"*") and b"MULTI" not in r and r != b"*0\r\n"]
    data = b"".join(plain)
    ends = [sum(len(r) for r in plain[: i + 1]) for i in range(len(plain))]
    for cut in range(len(data) + 1):
        pos, count = skim_requests(data, 0, cut, STATEFUL)
        whole = [e for e in ends if e <= cut]
        assert count == len(whole), cut
        assert pos == (whole[-1] if whole else 0), cut


@pytest.mark.parametrize("other", [b"PING\r\n", b"*1\r\n$5\r\nmulti\r\n", b"*0\r\n", b"*1\r\n:1\r\n"])
def test_the_skimmer_leaves_the_rest_to_the_careful_path(other: bytes) -> None:
    data = REQUESTS[0] + other + REQUESTS[0]
    assert skim_requests(data, 0, len(data), STATEFUL) == (len(REQUESTS[0]), 1)


@pytest.mark.parametrize("request_", REQUESTS)
def test_a_request_head_at_every_split(request_: bytes) -> None:
    full = parse_head(request_, 0, len(request_), True)
    assert full is not None
    end, left, argv = full
    rest = request_[end:]
    for _ in range(left):  # the arguments not read are whole bulk strings up to the end
        size, _, rest = rest[1:].partition(b"\r\n")
        rest = rest[int(size) + 2 :]
    assert rest == b""
    for cut in range(len(request_)):
        head = parse_head(request_, 0, cut, True)
        assert head is None or (head[0] <= cut and head[2] == argv[: len(head[2])])


def test_a_head_stops_at_the_key_so_a_large_value_can_stream() -> None:
    req = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n"  # the value has not arrived
    assert parse_head(req, 0, len(req), True) == (len(req) - len(b"$1000000\r\n"), 1, [b"SET", b"k"])
    assert parse_head(req, 0, len(req), False) == (len(b"*3\r\n$3\r\nSET\r\n"), 2, [b"SET"])
    assert parse_head(req, 0, 10, True) is None


def test_inline_requests_split_on_whitespace() -> None:
    assert parse_head(b"set  k v\r\n", 0, 10, True) == (10, 0, [b"set", b"k", b"v"])
    assert parse_head(b"\r\n", 0, 2, True) == (2, 0, [])
    assert parse_head(b"GET k", 0, 5, True) is None


def test_requests_that_are_not_resp() -> None:
    with pytest.raises(ProtocolError):
        parse_head(b"*1\r\n:1\r\n", 0, 8, True)
    with pytest.raises(ProtocolError):
        parse_head(b"*1\r\n$-1\r\n", 0, 9, True)


@pytest.mark.parametrize(
    ("argv", "key"),
    [
        ([b"GET", b"k"], b"k"),
        ([b"SET", b"k", b"v"], b"k"),
        ([b"HSET", b"h", b"f", b"v"], b"h"),
        ([b"GETDEL", b"g"], b"g"),
        ([b"OBJECT", b"ENCODING", b"o"], b"o"),
        ([b"LMPOP", b"2", b"l1", b"l2", b"LEFT"], b"l1"),
        ([b"EVAL", b"return 1", b"1", b"s"], b"s"),
        ([b"EVAL", b"return 1", b"0"], None),
        ([b"XREAD", b"COUNT", b"1", b"STREAMS", b"x", b"0"], b"x"),
        ([b"PING"], None),
        ([b"AUTH", b"user", b"pw"], None),
        ([b"HELLO", b"3"], None),
        ([b"SELECT", b"1"], None),
        ([b"CLIENT", b"SETNAME", b"n"], None),
        ([b"PUBLISH", b"ch", b"m"], None),
        ([b"GET"], None),
    ],
)
def test_the_key_of_a_command(argv: list[bytes], key: bytes | None) -> None:
    assert key_of(argv[0], argv) == key


def test_injected_replies() -> None:
    err = ProxyFault(ProxyAction.ERROR)
    assert render(err, False) == b"-ERR injected fault\r\n"
    ro = ProxyFault(ProxyAction.ERROR, message="READONLY You can't write\r\nagainst a replica.")
    assert render(ro, True) == b"-READONLY You can't write  against a replica.\r\n"
    value = ProxyFault(ProxyAction.RESPOND, body="héllo")
    assert render(value, False) == render(value, True) == b"$6\r\nh\xc3\xa9llo\r\n"
    nil = ProxyFault(ProxyAction.RESPOND, nil=True)
    assert (render(nil, False), render(nil, True)) == (b"$-1\r\n", b"_\r\n")
    assert render(ProxyFault(ProxyAction.RESPOND), False) == b"+OK\r\n"


@pytest.mark.parametrize("placeholder", [UNKNOWN, PING, DISCARD])
def test_placeholders_are_exact_requests(placeholder: bytes) -> None:
    """What the proxy forwards in a faulted command's place must frame exactly: Redis does not check
    the CRLF after a bulk string, so a wrong length would go unnoticed until it desynchronised."""
    head = parse_head(placeholder, 0, len(placeholder), True)
    assert head is not None and head[:2] == (len(placeholder), 0)
    assert skim_requests(placeholder, 0, len(placeholder), frozenset()) == (len(placeholder), 1)
