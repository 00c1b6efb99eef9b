"""The PostgreSQL proxy's wire logic without a server: framing across any chunking, the replies owed
per segment (with pipelined syncs, errors, COPY), the rewrites of a faulted statement, SQL splitting."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from faultbox.model.proxy import ProxyAction, ProxyFault, ProxyRule
from faultbox.proxy.postgres_client import ClientSide
from faultbox.proxy.postgres_server import ServerSide
from faultbox.proxy.postgres_sql import raise_statement, split_statements, statement_text
from faultbox.proxy.postgres_wire import INJECTED_NAME, Control, Op, Wire, message, python_encoding
from faultbox.proxy.rules import Installed, RuleBook

# -- building messages -------------------------------------------------------------------------


def parse(sql: bytes, name: bytes = b"") -> bytes:
    return message(b"P", name + b"\0" + sql + b"\0\0\0")


def bind(stmt: bytes = b"", portal: bytes = b"") -> bytes:
    return message(b"B", portal + b"\0" + stmt + b"\0\0\0\0\0\0\0")


def describe() -> bytes:
    return message(b"D", b"P\0")


def execute() -> bytes:
    return message(b"E", b"\0\0\0\0\0")


def close(name: bytes) -> bytes:
    return message(b"C", b"S" + name + b"\0")


def query(sql: bytes) -> bytes:
    return message(b"Q", sql + b"\0")


def statement(sql: bytes, name: bytes = b"") -> bytes:
    """What psycopg sends for one execution in the extended protocol (without its Sync)."""
    return (parse(sql, name) if sql else b"") + bind(name) + describe() + execute()


SYNC = message(b"S", b"")
COPY_DATA = message(b"d", b"1\n")
COPY_DONE = message(b"c", b"")

PARSE_OK, BIND_OK, CLOSE_OK, NO_DATA = (message(t, b"") for t in (b"1", b"2", b"3", b"n"))
COPY_IN = message(b"G", b"\0\0\0")


def done(tag: bytes = b"INSERT 0 1") -> bytes:
    return message(b"C", tag + b"\0")


def ready(status: bytes = b"I") -> bytes:
    return message(b"Z", status)


def error(code: bytes, text: bytes, context: bytes | None = b"PL/pgSQL function inline_code_block line 1") -> bytes:
    fields = b"SERROR\0C" + code + b"\0M" + text + b"\0"
    if context is not None:
        fields += b"W" + context + b"\0"
    return message(b"E", fields + b"Fpl_exec.c\0\0")


def split(stream: bytes) -> list[tuple[str, bytes]]:
    out = []
    pos = 0
    while pos < len(stream):
        length = int.from_bytes(stream[pos + 1 : pos + 5], "big")
        out.append((chr(stream[pos]), stream[pos + 5 : pos + 1 + length]))
        pos += 1 + length
    assert pos == len(stream)
    return out


def types(stream: bytes) -> str:
    return "".join(t for t, _ in split(stream))


def joined(ops: Iterable[Op]) -> bytes:
    return b"".join(bytes(op) for op in ops if isinstance(op, (bytes, memoryview)))


# -- a connection's two sides ------------------------------------------------------------------


class Conn:
    def __init__(self, *faults: ProxyFault, recording: bool = False) -> None:
        self.book = RuleBook()
        self.install(*faults)
        self.wire = Wire()
        self.decided: list[str | None] = []
        self.records: list[dict[str, object]] = []
        self.warnings: list[str] = []
        self.client = ClientSide(self.wire, self._decide, lambda: self.book.active, recording, self.warnings.append)
        self.server = ServerSide(self.wire, self.records.append if recording else None, self.warnings.append)
        self.server.feed(ready())  # the startup's ReadyForQuery

    def install(self, *faults: ProxyFault) -> None:
        self.book.set([Installed(i + 100, ProxyRule("s", "i", "postgres", f), f"k{i}") for i, f in enumerate(faults)])

    def _decide(self, sql: str | None) -> object:
        self.decided.append(sql)
        return self.book.decide({"query": sql})

    def send(self, data: bytes) -> list[Op]:
        return self.client.feed(data)

    def reply(self, data: bytes) -> bytes:
        return joined(self.server.feed(data))


def fault(action: ProxyAction, glob: str = "INSERT*", **kw: Any) -> ProxyFault:
    return ProxyFault(action, (("query", glob),), **kw)


NEVER = fault(ProxyAction.ERROR, "NEVER*")

# -- framing -----------------------------------------------------------------------------------

CLIENT_STREAM = (
    parse(b"SELECT 1", b"s1")
    + SYNC
    + statement(b"INSERT INTO t VALUES ($1)")
    + SYNC
    + query(b"SELECT 2; SELECT 3")
    + bind(b"s1")
    + execute()
    + SYNC
    + message(b"d", b"x" * 70_000)
)


@pytest.mark.parametrize("chunk", [1, 3, 5, 7, 64, 100_000])
@pytest.mark.parametrize("faults", [(), (NEVER,)])
def test_client_stream_relays_byte_exact_whatever_the_chunking(chunk: int, faults: tuple[ProxyFault, ...]) -> None:
    conn = Conn(*faults)
    out = b"".join(joined(conn.send(CLIENT_STREAM[i : i + chunk])) for i in range(0, len(CLIENT_STREAM), chunk))
    assert out == CLIENT_STREAM
    assert conn.client.segments == 3
    assert conn.client.statements == {b"s1": b"SELECT 1"}


SERVER_STREAM = (
    PARSE_OK
    + ready()
    + message(b"A", b"\0\0\0\x07chan\0payload\0")  # a NOTIFY between segments
    + PARSE_OK
    + BIND_OK
    + NO_DATA
    + done()
    + ready()
    + message(b"T", b"\0\0")
    + message(b"D", b"\0\x01" + b"\0\0\x10\0" + b"y" * 4096)
    + done(b"SELECT 1")
    + message(b"N", b"SNOTICE\0Mhi\0\0")
    + done(b"SELECT 1")
    + ready()
)


@pytest.mark.parametrize("chunk", [1, 2, 5, 6, 4097, 100_000])
@pytest.mark.parametrize("faults", [(), (NEVER,)])
def test_server_stream_relays_byte_exact_whatever_the_chunking(chunk: int, faults: tuple[ProxyFault, ...]) -> None:
    conn = Conn(*faults)
    conn.send(CLIENT_STREAM[: CLIENT_STREAM.index(query(b"SELECT 2; SELECT 3")) + 23])
    out = b"".join(conn.reply(SERVER_STREAM[i : i + chunk]) for i in range(0, len(SERVER_STREAM), chunk))
    assert out == SERVER_STREAM
    assert conn.wire.ready_count == 3
    assert not conn.wire.lost and not conn.wire.tracked


def test_a_length_that_is_not_v3_makes_the_side_give_up_and_pass_the_bytes() -> None:
    conn = Conn()
    garbage = b"Qxxxxxxxxxxx"  # length 0x78787878: over 1 GB
    ops = conn.send(SYNC + garbage)
    assert joined(ops) == SYNC + garbage and ops[-1] is Control.RAW
    ops = conn.server.feed(ready() + b"Z\0\0\0\x02")  # length 2 < 4
    assert joined(ops) == ready() + b"Z\0\0\0\x02" and ops[-1] is Control.RAW


def test_a_malformed_message_makes_the_side_give_up_and_pass_the_bytes() -> None:
    conn = Conn(NEVER)
    bad = message(b"P", b"no terminators")
    ops = conn.send(SYNC + bad + SYNC)
    assert joined(ops) == SYNC + bad + SYNC and ops[-1] is Control.RAW
    assert "malformed" in conn.client.why and conn.wire.lost


# -- the error rewrite in the extended protocol ------------------------------------------------


def test_a_faulted_bind_is_replaced_up_to_its_sync_and_the_replies_to_the_proxy_messages_are_swallowed() -> None:
    conn = Conn(fault(ProxyAction.ERROR, sqlstate="40001", message="it's $fb$ \\ busy"))
    sent = joined(conn.send(statement(b"INSERT INTO t VALUES ($1)") + SYNC))
    msgs = split(sent)
    assert [t for t, _ in msgs] == ["P", "C", "P", "B", "E", "S"]  # the client's Parse, then ours
    assert msgs[1][1] == b"S" + INJECTED_NAME + b"\0"
    assert msgs[2][1].startswith(INJECTED_NAME + b"\0DO ")
    assert msgs[3][1] == b"\0" + INJECTED_NAME + b"\0\0\0\0\0\0\0"
    assert conn.decided == ["INSERT INTO t VALUES ($1)"]

    seen = conn.reply(PARSE_OK + CLOSE_OK + PARSE_OK + BIND_OK + error(b"40001", b"it's") + ready(b"I"))
    assert types(seen) == "1EZ"
    fields = split(seen)[1][1]
    assert b"C40001\0" in fields and b"W" not in [f[:1] for f in fields.split(b"\0")]
    assert not conn.wire.lost

    # the connection goes on: a later statement is relayed and answered as usual
    assert joined(conn.send(statement(b"SELECT 1") + SYNC)) == statement(b"SELECT 1") + SYNC
    answer = PARSE_OK + BIND_OK + NO_DATA + done() + ready()
    assert conn.reply(answer) == answer


def test_the_error_statement_quotes_the_message() -> None:
    sql = raise_statement("40001", "it's $fb$ \\ done")
    assert sql == (
        "DO $fb1$ BEGIN RAISE EXCEPTION USING ERRCODE = '40001', MESSAGE = E'it''s $fb$ \\\\ done'; END $fb1$"
    )


def test_a_pipeline_with_several_syncs_in_flight_keeps_each_segments_replies_apart() -> None:
    conn = Conn(fault(ProxyAction.ERROR, "INSERT INTO b*"))
    batch = (
        statement(b"INSERT INTO a VALUES (1)")
        + SYNC
        + statement(b"SELECT 1")
        + statement(b"INSERT INTO b VALUES (1)")
        + statement(b"INSERT INTO c VALUES (1)")  # after the fault in its segment: dropped
        + SYNC
        + statement(b"INSERT INTO d VALUES (1)")
        + SYNC
    )
    sent = types(joined(conn.send(batch)))
    assert sent == "PBDES" + "PBDE" + "P" + "CPBE" + "S" + "PBDES"
    replies = (
        PARSE_OK + BIND_OK + NO_DATA + done() + ready()
        # second segment: SELECT 1, then the client's Parse of INSERT INTO b, then ours
        + PARSE_OK + BIND_OK + NO_DATA + done(b"SELECT 1")
        + PARSE_OK
        + CLOSE_OK + PARSE_OK + BIND_OK + error(b"XX000", b"injected fault") + ready()
        + PARSE_OK + BIND_OK + NO_DATA + done() + ready()
    )  # fmt: skip
    for cut in (len(replies), 7):  # in one piece, and in small pieces
        conn2 = Conn(fault(ProxyAction.ERROR, "INSERT INTO b*"))
        conn2.send(batch)
        seen = b"".join(conn2.reply(replies[i : i + cut]) for i in range(0, len(replies), cut))
        assert types(seen) == "12nCZ" + "12nC" + "1" + "EZ" + "12nCZ"
        assert not conn2.wire.tracked and not conn2.wire.lost


def test_an_earlier_error_in_the_segment_means_the_server_skips_the_injected_messages() -> None:
    conn = Conn(fault(ProxyAction.ERROR, "INSERT INTO b*"))
    conn.send(statement(b"SELECT x") + statement(b"INSERT INTO b VALUES (1)") + SYNC)
    real = error(b"42703", b"column x does not exist", context=None)
    assert conn.reply(PARSE_OK + real + ready()) == PARSE_OK + real + ready()
    conn.send(statement(b"SELECT 1") + SYNC)
    assert types(conn.reply(PARSE_OK + BIND_OK + NO_DATA + done() + ready())) == "12nCZ"
    assert not conn.wire.lost


def test_a_named_statement_is_matched_by_the_sql_of_its_parse_even_when_prepared_before_the_rule() -> None:
    conn = Conn()
    conn.send(parse(b"INSERT INTO t VALUES ($1)", b"_pg3_0") + SYNC)
    conn.reply(PARSE_OK + ready())
    conn.install(fault(ProxyAction.ERROR))
    sent = types(joined(conn.send(statement(b"", b"_pg3_0") + SYNC)))
    assert sent == "CPBES"
    assert conn.decided == ["INSERT INTO t VALUES ($1)"]
    # Close forgets it; a DEALLOCATE does too
    conn.reply(CLOSE_OK + PARSE_OK + BIND_OK + error(b"XX000", b"x") + ready())
    conn.send(close(b"_pg3_0") + SYNC)
    conn.send(parse(b"SELECT 1", b"_pg3_1") + SYNC + query(b"DEALLOCATE _pg3_1"))
    assert conn.client.statements == {}


def test_copy_from_stdin_in_the_extended_protocol_merges_the_ignored_sync() -> None:
    conn = Conn(fault(ProxyAction.ERROR, "INSERT INTO b*"))
    copy = statement(b"COPY t FROM STDIN") + SYNC
    conn.send(copy)
    assert conn.reply(PARSE_OK + BIND_OK + NO_DATA + COPY_IN) == PARSE_OK + BIND_OK + NO_DATA + COPY_IN
    conn.send(COPY_DATA + COPY_DONE + SYNC)  # libpq's second Sync; the first was ignored by the server
    assert conn.client.segments == 1
    conn.reply(done(b"COPY 1") + ready())
    # still in step: the next faulted statement's replies are swallowed correctly
    conn.send(statement(b"INSERT INTO b VALUES (1)") + SYNC)
    assert types(conn.reply(PARSE_OK + CLOSE_OK + PARSE_OK + BIND_OK + error(b"XX000", b"x") + ready())) == "1EZ"
    assert not conn.wire.lost


def test_copy_from_stdin_in_a_simple_query_ends_with_copy_done() -> None:
    conn = Conn(NEVER)
    conn.send(query(b"COPY t FROM STDIN"))
    conn.reply(COPY_IN)
    conn.send(COPY_DATA + COPY_DATA + COPY_DONE)
    assert conn.client.segments == 1 and not conn.client.in_segment
    conn.reply(done(b"COPY 2") + ready())
    conn.send(query(b"SELECT 1"))
    conn.reply(done(b"SELECT 1") + ready())
    assert conn.wire.ready_count == 2 and not conn.wire.tracked and not conn.wire.lost


# -- simple Query ------------------------------------------------------------------------------


def test_a_faulted_statement_of_a_simple_query_becomes_the_error_and_earlier_ones_still_run() -> None:
    conn = Conn(fault(ProxyAction.ERROR, "insert into orders*", sqlstate="23505"), recording=True)
    sent = split(joined(conn.send(query(b"BEGIN; /* app */ INSERT INTO orders VALUES (1); COMMIT"))))
    assert [t for t, _ in sent] == ["Q"]
    text = sent[0][1]
    assert text.startswith(b"BEGIN;DO $fb$") and b"ERRCODE = '23505'" in text and b"COMMIT" not in text
    assert conn.decided == ["BEGIN", "INSERT INTO orders VALUES (1)"]
    seen = conn.reply(done(b"BEGIN") + error(b"23505", b"injected fault") + ready(b"E"))
    assert types(seen) == "CEZ" and b"\0W" not in split(seen)[1][1]
    assert [(r["query"], r["status"], r.get("sqlstate")) for r in conn.records] == [
        ("BEGIN", "ok", None),
        ("INSERT INTO orders VALUES (1)", "error", "23505"),
    ]


def test_delay_and_drop_verdicts_become_ops() -> None:
    conn = Conn(fault(ProxyAction.DELAY, "SELECT*", delay=0.25), fault(ProxyAction.DROP, "DELETE*"))
    ops = conn.send(query(b"SELECT 1") + query(b"DELETE FROM t") + query(b"SELECT 2"))
    assert ops[0] == 0.25 and joined(ops[1:2]) == query(b"SELECT 1") and ops[-1] is Control.DROP
    assert conn.decided == ["SELECT 1", "DELETE FROM t"]


def test_no_decision_while_no_rule_is_installed() -> None:
    conn = Conn()
    conn.send(statement(b"INSERT INTO t VALUES (1)") + SYNC + query(b"SELECT 1"))
    assert conn.decided == [] and not conn.wire.tracked


def test_recording_times_each_execution() -> None:
    conn = Conn(recording=True)
    conn.send(statement(b"INSERT INTO t VALUES ($1)") + statement(b"SELECT nope") + SYNC)
    conn.reply(PARSE_OK + BIND_OK + NO_DATA + done() + PARSE_OK + error(b"42703", b"no column", None) + ready())
    assert [(r["query"], r["status"], r.get("sqlstate")) for r in conn.records] == [
        ("INSERT INTO t VALUES ($1)", "ok", None),
        ("SELECT nope", "error", "42703"),
    ]
    assert all(isinstance(r["duration_ms"], float) for r in conn.records)


def test_an_unexpected_reply_stops_faults_instead_of_swallowing_the_wrong_message() -> None:
    conn = Conn(NEVER)
    conn.send(statement(b"SELECT 1") + SYNC)
    assert conn.reply(BIND_OK + ready()) == BIND_OK + ready()  # a Bind reply where a Parse reply is owed
    assert conn.wire.lost and conn.warnings
    conn.send(statement(b"SELECT 1") + SYNC)
    assert not conn.wire.tracked


# -- SQL text ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "statements"),
    [
        ("SELECT 1", ["SELECT 1"]),
        ("  SELECT 1 ;  ", ["SELECT 1"]),
        ("SELECT ';' ; SELECT 2", ["SELECT ';'", "SELECT 2"]),
        ("SELECT E'\\';' ; SELECT 2", ["SELECT E'\\';'", "SELECT 2"]),
        ("SELECT 'it''s;'", ["SELECT 'it''s;'"]),
        ('SELECT 1 AS "a;b"; SELECT 2', ['SELECT 1 AS "a;b"', "SELECT 2"]),
        ("DO $x$ BEGIN; END $x$; SELECT $1", ["DO $x$ BEGIN; END $x$", "SELECT $1"]),
        ("SELECT 1 -- x;\n; SELECT 2", ["SELECT 1", "SELECT 2"]),
        ("/* a /* b; */ c; */ SELECT 1; /* only */ ;", ["SELECT 1"]),
        (";;", []),
        ("SELECT a$b$c; SELECT 2", ["SELECT a$b$c", "SELECT 2"]),
        ("SELECT 'unterminated; SELECT 2", ["SELECT 'unterminated; SELECT 2"]),
    ],
)
def test_split_statements(text: str, statements: list[str]) -> None:
    assert [text[c:e] for _, c, e in split_statements(text)] == statements


def test_statement_text_drops_leading_comments() -> None:
    assert statement_text("/* svc=orders */ -- x\n INSERT INTO t") == "INSERT INTO t"
    assert statement_text("INSERT /* keep */ INTO t") == "INSERT /* keep */ INTO t"


def test_client_encodings_map_to_python_codecs() -> None:
    assert python_encoding("UTF8") == "utf-8"
    assert python_encoding("LATIN1") == "iso8859-1"
    assert python_encoding("WIN1252") == "cp1252"
    assert python_encoding("MULE_INTERNAL") == "utf-8"
