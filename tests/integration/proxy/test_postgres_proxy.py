"""The PostgreSQL proxy against a real PostgreSQL 15 with psycopg 3 (libpq) as the client.

One server for the module: its superuser authenticates with SCRAM-SHA-256, `trusty` with trust and
`md5user` with MD5 (pg_hba lines added to the test's data dir). Relay tests run both with no rule
installed (nothing decoded) and with a rule that never matches (every reply tracked).
"""

from __future__ import annotations

import select
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from depserver import Server  # on sys.path through conftest
from psycopg import pq
from psycopg.conninfo import make_conninfo

from faultbox.deps import postgres
from faultbox.deps.base import free_port
from faultbox.model.proxy import ProxyAction, ProxyFault

SUPER_PASSWORD = "s3cret-scram"
MD5_PASSWORD = "md5-secret"
WAIT = 10.0  # bound of every wait on a condition


@dataclass
class Pg:
    port: int

    def dsn(self, port: int | None = None, user: str = "trusty", **params: Any) -> str:
        """No sslmode: libpq's default `prefer`, so the client starts with an SSLRequest."""
        return make_conninfo(
            host="127.0.0.1", port=port or self.port, user=user, dbname="postgres", connect_timeout=10, **params
        )

    def connect(self, port: int | None = None, **params: Any) -> psycopg.Connection[Any]:
        params.setdefault("autocommit", True)
        autocommit = params.pop("autocommit")
        return psycopg.connect(self.dsn(port, **params), autocommit=autocommit)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """What the server has, seen from a direct connection."""
        with self.connect() as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def pg() -> Iterator[Pg]:
    workdir = tempfile.mkdtemp(prefix="fb-pgproxy-", dir="/tmp")
    port = free_port()
    server = Server(postgres.prepare(workdir, port, password=SUPER_PASSWORD)).start()
    try:
        with psycopg.connect(postgres.dsn(port, password=SUPER_PASSWORD), autocommit=True) as conn:
            conn.execute("CREATE ROLE trusty LOGIN SUPERUSER")
            conn.execute("SET password_encryption = 'md5'")
            conn.execute(f"CREATE ROLE md5user LOGIN SUPERUSER PASSWORD '{MD5_PASSWORD}'")
            hba = Path(server.plan.data_dir or "") / "pg_hba.conf"
            rules = "host all trusty 127.0.0.1/32 trust\nhost all md5user 127.0.0.1/32 md5\n"
            hba.write_text(rules + hba.read_text())
            conn.execute("SELECT pg_reload_conf()")
        _wait(lambda: _can_connect(Pg(port).dsn()), "the trust rule to load")
        yield Pg(port)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _can_connect(dsn: str) -> bool:
    try:
        psycopg.connect(dsn).close()
        return True
    except psycopg.OperationalError:
        return False


def _wait(cond: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# libpq-level calls for what psycopg's API does not expose (extended-protocol COPY, several syncs in
# flight). They must not block inside libpq: psycopg holds the GIL there, and the proxy under test
# runs in a thread of this process.
def _flush(pgconn: Any) -> None:
    deadline = time.monotonic() + WAIT
    while pgconn.flush():
        assert time.monotonic() < deadline, "libpq could not send"
        select.select([], [pgconn.socket], [], 0.1)


def _result(pgconn: Any) -> Any:
    _flush(pgconn)
    deadline = time.monotonic() + WAIT
    pgconn.consume_input()
    while pgconn.is_busy():
        assert time.monotonic() < deadline, "no reply through the proxy"
        select.select([pgconn.socket], [], [], 0.1)
        pgconn.consume_input()
    return pgconn.get_result()


def error(glob: str, **kw: Any) -> ProxyFault:
    return ProxyFault(ProxyAction.ERROR, (("query", glob),), **kw)


NEVER = error("NEVER MATCHES*")
MODES = pytest.mark.parametrize("rules", [(), (NEVER,)], ids=["idle", "tracked"])


# -- startup and authentication ----------------------------------------------------------------


def test_trust_md5_and_scram_authenticate_through_the_proxy_with_sslmode_prefer(pg: Pg, proxy_to: Any) -> None:
    p = proxy_to("postgres", pg.port)
    for user, password in (("trusty", None), ("md5user", MD5_PASSWORD), ("postgres", SUPER_PASSWORD)):
        extra = {"password": password} if password else {}
        with pg.connect(p.port, user=user, **extra) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (user,)
            assert not conn.pgconn.ssl_in_use  # the proxy answered the SSLRequest with N
            if password:
                assert conn.pgconn.used_password
        if password:  # the server really checked the password through the proxy
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                pg.connect(p.port, user=user, password="wrong")
    # md5user's password is stored as an MD5 hash, so the server really ran the MD5 exchange
    assert pg.rows("SELECT rolpassword LIKE 'md5%' FROM pg_authid WHERE rolname = 'md5user'") == [(True,)]
    assert not p.listener.warnings


def _startup(user: bytes) -> bytes:
    body = struct.pack("!I", 3 << 16) + b"user\0" + user + b"\0database\0postgres\0\0"
    return struct.pack("!I", len(body) + 4) + body


def _recv_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_gssenc_and_ssl_requests_are_answered_n_and_the_startup_follows(pg: Pg, proxy_to: Any) -> None:
    p = proxy_to("postgres", pg.port)
    with socket.create_connection(("127.0.0.1", p.port), timeout=WAIT) as sock:
        sock.sendall(struct.pack("!II", 8, 80877104))  # GSSENCRequest
        assert sock.recv(1) == b"N"
        sock.sendall(struct.pack("!II", 8, 80877103))  # SSLRequest
        assert sock.recv(1) == b"N"
        sock.sendall(_startup(b"trusty"))
        data = b""
        while not data.endswith(b"Z\0\0\0\x05I"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"R\0\0\0\x08\0\0\0\0")  # AuthenticationOk
        sock.sendall(b"X\0\0\0\x04")
        assert _recv_until_closed(sock) == b""


def test_cancel_request_reaches_the_server(pg: Pg, proxy_to: Any) -> None:
    p = proxy_to("postgres", pg.port)
    with pg.connect(p.port, application_name="fb-cancel") as conn:
        failure: list[BaseException] = []

        def sleep() -> None:
            try:
                conn.execute("SELECT pg_sleep(30)")
            except BaseException as exc:
                failure.append(exc)

        worker = threading.Thread(target=sleep)
        worker.start()
        active = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fb-cancel' AND state = 'active'"
        _wait(lambda: pg.rows(active) == [(1,)], "the query to run")
        opened = len(p.of("proxy_conn_open"))
        conn.cancel_safe(timeout=WAIT)  # a new connection through the proxy: (SSLRequest,) CancelRequest
        worker.join(WAIT)
        assert not worker.is_alive()
        assert isinstance(failure[0], psycopg.errors.QueryCanceled)
        assert len(p.of("proxy_conn_open")) == opened + 1
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize(
    ("payload", "answer"),
    [
        (struct.pack("!II", 8 + 4, 2 << 16) + b"\0" * 4, b"unsupported frontend protocol 2.0"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b""),
    ],
    ids=["protocol-2", "http"],
)
def test_an_undecodable_startup_is_relayed_untouched_with_one_warning(
    pg: Pg, proxy_to: Any, payload: bytes, answer: bytes
) -> None:
    p = proxy_to("postgres", pg.port)
    with socket.create_connection(("127.0.0.1", p.port), timeout=WAIT) as sock:
        sock.sendall(payload)
        reply = _recv_until_closed(sock)  # the server's own answer, then its close: no hang
    assert answer in reply
    assert len(p.listener.warnings) == 1 and "relaying" in p.listener.warnings[0]


def test_an_undecodable_message_after_the_startup_is_relayed_untouched(pg: Pg, proxy_to: Any) -> None:
    p = proxy_to("postgres", pg.port)
    p.install(NEVER)
    with socket.create_connection(("127.0.0.1", p.port), timeout=WAIT) as sock:
        sock.sendall(_startup(b"trusty"))
        data = b""
        while not data.endswith(b"Z\0\0\0\x05I"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        sock.sendall(b"\xff\0\0\0\x08abcd")  # not a frontend message type
        reply = _recv_until_closed(sock)
    assert b"invalid frontend message type 255" in reply  # the server's FATAL, relayed
    assert len(p.listener.warnings) == 0  # framing was fine: the server judged it

    with socket.create_connection(("127.0.0.1", p.port), timeout=WAIT) as sock:
        sock.sendall(_startup(b"trusty"))
        data = b""
        while not data.endswith(b"Z\0\0\0\x05I"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        sock.sendall(b"Q\0\0\0\x02")  # a length no message can have
        reply = _recv_until_closed(sock)
    assert reply == b""  # the server dropped the connection (it logs "invalid message length"): no hang
    assert len(p.listener.warnings) == 1 and "length of 2" in p.listener.warnings[0]


# -- relaying ----------------------------------------------------------------------------------


@MODES
def test_notify_notice_and_parameter_status_reach_an_idle_client(
    pg: Pg, proxy_to: Any, rules: tuple[ProxyFault, ...]
) -> None:
    p = proxy_to("postgres", pg.port)
    p.install(*rules)
    with pg.connect(p.port) as listener, pg.connect(p.port) as other:
        notices: list[str] = []
        listener.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        listener.execute("LISTEN fbchan")
        listener.execute("DO $$ BEGIN RAISE NOTICE 'hello notice'; END $$")
        assert notices == ["hello notice"]
        listener.execute("SET application_name = 'fb-listener'")
        assert listener.info.parameter_status("application_name") == "fb-listener"
        other.execute("NOTIFY fbchan, 'payload-1'")
        got = [(n.channel, n.payload) for n in listener.notifies(timeout=WAIT, stop_after=1)]
        assert got == [("fbchan", "payload-1")]
        assert listener.execute("SELECT 2").fetchone() == (2,)  # the idle connection is still there
    assert not p.listener.warnings


@MODES
def test_extended_protocol_prepared_statements_pipeline_and_copy(
    pg: Pg, proxy_to: Any, rules: tuple[ProxyFault, ...]
) -> None:
    p = proxy_to("postgres", pg.port)
    p.install(*rules)
    table = f"relay_{len(rules)}"
    with pg.connect(p.port) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id int, label text)")
        assert conn.execute("SELECT %s::int + 1, %s::text", [41, "x"]).fetchone() == (42, "x")
        for i in range(3):
            row = conn.execute("SELECT %s::int * 2", [i], prepare=True).fetchone()
            assert row == (i * 2,)
        with conn.pipeline() as pipeline:
            cur = conn.cursor()
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", [(i, f"p{i}") for i in range(5)])
            pipeline.sync()
            cur.execute(f"SELECT count(*) FROM {table}")
            pipeline.sync()
            assert cur.fetchone() == (5,)
        with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
            for i in range(5, 2005):
                copy.write_row((i, "c" * 50))
        out = bytearray()
        with conn.cursor().copy(f"COPY (SELECT id FROM {table} ORDER BY id) TO STDOUT") as copy:
            for block in copy:
                out += block
        assert out.decode().split() == [str(i) for i in range(2005)]
        # COPY FROM STDIN in the extended protocol (libpq's own Parse/Bind/Execute/Sync, then its data)
        pgconn = conn.pgconn
        pgconn.send_query_params(f"COPY {table} (id) FROM STDIN".encode(), None)
        assert _result(pgconn).status == pq.ExecStatus.COPY_IN
        assert pgconn.put_copy_data(b"9001\n9002\n") == 1
        assert pgconn.put_copy_end() == 1
        results = []
        while (res := _result(pgconn)) is not None:
            results.append((res.status, res.command_status))
        assert results == [(pq.ExecStatus.COMMAND_OK, b"COPY 2")]
        assert conn.execute(f"SELECT count(*), sum(id) FROM {table}").fetchone() == (2007, sum(range(2005)) + 18003)
        big = conn.execute("SELECT repeat('z', 3000000)").fetchone()
        assert big is not None and len(big[0]) == 3_000_000
    assert not p.listener.warnings


# -- error() -----------------------------------------------------------------------------------


def test_error_on_simple_and_extended_statements_is_a_real_error_response(pg: Pg, proxy_to: Any) -> None:
    p = proxy_to("postgres", pg.port)
    message = "can't serialize: $fb$ \\ 'quoted'"
    p.install(error("SELECT 'boom'*", sqlstate="40001", message=message), error("SELECT $1::int + 1"))
    with pg.connect(p.port) as conn:
        with pytest.raises(psycopg.errors.SerializationFailure) as caught:
            conn.execute("SELECT 'boom'")  # no parameters: psycopg sends a simple Query
        diag = caught.value.diag
        assert (diag.sqlstate, diag.message_primary, diag.context) == ("40001", message, None)
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE
        assert conn.execute("SELECT 'fine'").fetchone() == ("fine",)
        with pytest.raises(psycopg.errors.InternalError_, match="injected fault") as caught2:
            conn.execute("SELECT %s::int + 1", [1])  # Parse/Bind/Execute
        assert caught2.value.diag.sqlstate == "XX000"
        assert conn.execute("SELECT %s::int + 2", [1]).fetchone() == (3,)
    fired = p.of("proxy")
    assert [(e["action"], e["query"], e.get("sqlstate")) for e in fired] == [
        ("error", "SELECT 'boom'", "40001"),
        ("error", "SELECT $1::int + 1", None),
    ]
    assert list(p.clear().values()) == [(1, 1, 0), (1, 1, 0)]


def test_error_hits_a_statement_prepared_before_the_rule_and_never_poisons_it(pg: Pg, proxy_to: Any) -> None:
    p = proxy_to("postgres", pg.port)
    with pg.connect(p.port) as conn:
        sql = "SELECT %s::int * 10"
        assert conn.execute(sql, [1], prepare=True).fetchone() == (10,)
        p.install(error("SELECT $1::int * 10", sqlstate="40P01"))
        with pytest.raises(psycopg.errors.DeadlockDetected):
            conn.execute(sql, [2], prepare=True)  # only Bind/Execute of the named statement
        assert p.of("proxy")[0]["query"] == "SELECT $1::int * 10"
        prepared = conn.execute("SELECT name, statement FROM pg_prepared_statements").fetchall()
        assert all(not stmt.startswith("DO") for name, stmt in prepared if name != "faultbox_injected_fault")
        assert ("_pg3_0", "SELECT $1::int * 10") in prepared
        p.clear()
        assert conn.execute(sql, [3], prepare=True).fetchone() == (30,)


def test_error_in_a_pipeline_aborts_the_rest_of_its_sync_only(pg: Pg, proxy_to: Any) -> None:
    p = proxy_to("postgres", pg.port)
    with pg.connect(p.port) as conn:
        conn.execute("DROP TABLE IF EXISTS pipe_t; CREATE TABLE pipe_t (v int)")
        p.install(error("INSERT INTO pipe_t VALUES (2)", sqlstate="40001"))
        pgconn = conn.pgconn
        pgconn.enter_pipeline_mode()
        for group in ([1], [2, 3], [4]):  # three syncs in flight before any result is read
            for v in group:
                pgconn.send_query_params(f"INSERT INTO pipe_t VALUES ({v})".encode(), None)
            pgconn.pipeline_sync()
        statuses = []
        for _ in range(7):  # 4 queries and 3 syncs
            res = _result(pgconn)
            assert res is not None
            statuses.append((res.status, res.error_field(pq.DiagnosticField.SQLSTATE)))
            if res.status != pq.ExecStatus.PIPELINE_SYNC:
                assert _result(pgconn) is None
        pgconn.exit_pipeline_mode()
        E = pq.ExecStatus
        assert statuses == [
            (E.COMMAND_OK, None),
            (E.PIPELINE_SYNC, None),
            (E.FATAL_ERROR, b"40001"),
            (E.PIPELINE_ABORTED, None),
            (E.PIPELINE_SYNC, None),
            (E.COMMAND_OK, None),
            (E.PIPELINE_SYNC, None),
        ]
        assert conn.execute("SELECT 5").fetchone() == (5,)
        # psycopg's own pipeline: one Sync at the end, so the whole batch is one implicit transaction
        with pytest.raises(psycopg.errors.SerializationFailure), conn.pipeline():
            for v in (5, 2, 6):
                conn.execute(f"INSERT INTO pipe_t VALUES ({v})")
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE
        conn.execute("INSERT INTO pipe_t VALUES (%s)", [7])
    assert pg.rows("SELECT v FROM pipe_t ORDER BY v") == [(1,), (4,), (7,)]
    assert [e["query"] for e in p.of("proxy")] == ["INSERT INTO pipe_t VALUES (2)"] * 2


def test_an_error_inside_a_transaction_fails_it_on_the_server_too(pg: Pg, proxy_to: Any) -> None:
    p = proxy_to("postgres", pg.port)
    with pg.connect(p.port) as conn:
        conn.execute("DROP TABLE IF EXISTS tx_t; CREATE TABLE tx_t (v int)")
    p.install(error("INSERT INTO tx_t (v)*", sqlstate="40001"), error("INSERT INTO tx_t VALUES (2*", sqlstate="40001"))
    with pg.connect(p.port, autocommit=False) as conn:  # psycopg opens the transaction itself
        conn.execute("INSERT INTO tx_t VALUES (%s)", [1])
        with pytest.raises(psycopg.errors.SerializationFailure):
            conn.execute("INSERT INTO tx_t (v) VALUES (%s)", [2])
        assert conn.info.transaction_status == pq.TransactionStatus.INERROR  # the server's own ReadyForQuery
        conn.commit()  # the server answers ROLLBACK
    with pg.connect(p.port) as conn:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO tx_t VALUES (10)")
        with pytest.raises(psycopg.errors.SerializationFailure):
            conn.execute("INSERT INTO tx_t VALUES (20); INSERT INTO tx_t VALUES (30)")
        assert conn.info.transaction_status == pq.TransactionStatus.INERROR
        cur = conn.execute("COMMIT")
        assert cur.statusmessage == "ROLLBACK"
        with pytest.raises(psycopg.errors.SerializationFailure):  # the statement before it ran, then the error
            conn.execute("INSERT INTO tx_t VALUES (40); INSERT INTO tx_t VALUES (2000)")
        assert conn.info.transaction_status == pq.TransactionStatus.IDLE
    assert pg.rows("SELECT v FROM tx_t") == []


# -- delay() and drop() ------------------------------------------------------------------------


def test_delay_holds_the_matched_statement_only(pg: Pg, proxy_to: Any) -> None:
    p = proxy_to("postgres", pg.port)
    p.install(ProxyFault(ProxyAction.DELAY, (("query", "SELECT 'slow'*"),), delay=1.0))
    with pg.connect(p.port) as slow, pg.connect(p.port) as fast:
        done: list[float] = []
        start = time.monotonic()
        worker = threading.Thread(target=lambda: (slow.execute("SELECT 'slow', %s::int", [1]), done.append(0)))
        worker.start()
        assert fast.execute("SELECT 'fast'").fetchone() == ("fast",)
        fast_elapsed = time.monotonic() - start
        worker.join(WAIT)
        slow_elapsed = time.monotonic() - start
        assert done and slow_elapsed >= 1.0 > fast_elapsed
        assert slow.execute("SELECT 'x'").fetchone() == ("x",)
    assert [e["delay_ms"] for e in p.of("proxy")] == ["1000"]


def test_drop_cuts_the_client_and_ends_the_server_session(pg: Pg, proxy_to: Any) -> None:
    p = proxy_to("postgres", pg.port)
    with pg.connect(p.port) as conn:
        conn.execute("DROP TABLE IF EXISTS drop_t; CREATE TABLE drop_t (v int)")
    p.install(ProxyFault(ProxyAction.DROP, (("query", "INSERT INTO drop_t VALUES (2)"),)))
    conn = pg.connect(p.port, application_name="fb-drop")
    try:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO drop_t VALUES (1)")
        with pytest.raises(psycopg.OperationalError):
            conn.execute("INSERT INTO drop_t VALUES (2)")
        assert conn.closed
    finally:
        conn.close()
    backends = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fb-drop'"
    _wait(lambda: pg.rows(backends) == [(0,)], "the server session to end")
    assert pg.rows("SELECT v FROM drop_t") == []  # its transaction was rolled back


# -- recording ---------------------------------------------------------------------------------


def test_recording_reports_each_statement_execution(pg: Pg, proxy_to: Any) -> None:
    p = proxy_to("postgres", pg.port, record=True)
    with pg.connect(p.port) as conn:
        conn.execute("SELECT 1; SELECT 2")
        conn.execute("SELECT %s::int", [3])
        with pytest.raises(psycopg.errors.UndefinedColumn):
            conn.execute("SELECT nope")
        p.install(error("SELECT 4*", sqlstate="40001"))
        with pytest.raises(psycopg.errors.SerializationFailure):
            conn.execute("SELECT 4")
    records = p.of("proxy_request")
    seen = [(r["query"], r["status"], r.get("sqlstate")) for r in records]
    assert seen == [
        ("SELECT 1", "ok", None),
        ("SELECT 2", "ok", None),
        ("SELECT $1::int", "ok", None),
        ("SELECT nope", "error", "42703"),
        ("SELECT 4", "error", "40001"),
    ]
    assert all(r["method"] == "query" and float(r["duration_ms"]) >= 0 for r in records)
