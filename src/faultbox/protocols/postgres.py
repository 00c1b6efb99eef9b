"""PostgreSQL steps over psycopg 3: `query` (rows) and `exec` (rows affected).

    query(sql, params=None, timeout)  .data = [{column: value}, ...]   ([] when no row comes back)
    exec(sql, params=None, timeout)   .data = {"rows_affected": n}     (.rows_affected = n too)

SQL. Without `params` the text goes through the simple query protocol, so it may hold several
statements ("BEGIN; ...; COMMIT"): `query` returns the rows of the last statement that returns rows,
`exec` the sum of every statement's row count (the number in its command tag: INSERT, UPDATE,
DELETE, SELECT, COPY...; 0 for DDL). With `params` the statement is a single prepared statement and
placeholders are PostgreSQL's own `$1, $2, ...` (not `%s`), so a literal `%` needs no escaping.
Parameters: None, bool, int, float, str as they are; a list becomes an array; a dict becomes jsonb.

Values come back as what Starlark compares: int, float, str, bool, None, lists (arrays) and dicts
(json/jsonb). numeric becomes an int when it has no fractional part (sum(), count-like results,
numeric(10,2) 5.00) and a float otherwise; NaN/Infinity become the strings "NaN", "Infinity",
"-Infinity". Cast to text in SQL (`amount::text`) to get every digit. date/time/timestamp values are
ISO 8601 strings (Python's isoformat: "2024-05-01T10:00:00+00:00"), infinite dates the server's text
("infinity"); interval is the server's text ("1 day 02:00:00"); uuid, inet, ranges and other types
are their text; bytea is its UTF-8 text when valid, else PostgreSQL's hex form "\\x0aff...". A
column name used twice in one row gets a suffix on its later uses ("id", "id_2").

Sessions. One connection per client, in autocommit, opened lazily and reopened when it broke (the
server may restart mid-test under faults). A step never leaves a transaction open: if the SQL does
(a BEGIN without COMMIT), the client rolls it back and the step returns ok=False saying so. Errors
never raise: SQL errors are ok=False with error "<SQLSTATE> <message>" ('42P01 relation "x" does not
exist'); connection errors (server down, restarting after a PANIC) ok=False with the driver's text.

Time. `timeout` bounds the whole step: the connect (psycopg's own connect_timeout has a 2 s floor, so
the connect runs in a helper thread that the step stops waiting for), the statement (the server
cancels it via statement_timeout, just before the deadline so the session survives), and a server
that does not answer at all (a watchdog shuts the socket down at the deadline; the step returns
ok=False and the next step reconnects).
"""

from __future__ import annotations

import json
import math
import os
import re
import select
import socket
import threading
import time
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.abc import AdaptContext
from psycopg.adapt import Loader
from psycopg.pq import Format, TransactionStatus
from psycopg.types.json import Jsonb
from psycopg.types.string import TextLoader

from faultbox._util.frozen import FrozenDict, FrozenList, thaw
from faultbox.model.response import Response

_METHODS = ("query", "exec")
# The server cancels a statement this much before the step's deadline (at most 10% of the timeout):
# a server-side cancel keeps the session usable, the watchdog at the deadline does not.
_CANCEL_MARGIN = 0.1
_Conn = psycopg.Connection[tuple[Any, ...]]


class _StepFailed(Exception):
    """Ends a step with ok=False and this message."""


class PostgresClient:
    def __init__(self, host: str, port: int, options: Mapping[str, Any]) -> None:
        self.host = host
        self.port = port
        self._conninfo = _conninfo(host, port, options)
        self._conn: _Conn | None = None
        self._statement_timeout_ms = 0  # what the open session has; 0 = unknown
        # Held by a step. close() may come from the runner's thread while an abandoned test body
        # is still inside a step: closing a libpq connection under a running query is unsafe.
        self._busy = threading.Lock()

    def call(self, method: str, args: Mapping[str, Any]) -> Response:
        with self._busy:
            return self._call(method, args)

    def close(self) -> None:
        if self._busy.acquire(timeout=1.0):
            try:
                self._disconnect()
            finally:
                self._busy.release()
            return
        conn = self._conn
        if conn is not None:
            # A step is still running: wake it (EOF on its socket); it drops the broken session.
            _shutdown(conn.fileno())

    def _call(self, method: str, args: Mapping[str, Any]) -> Response:
        start = time.monotonic()
        if method not in _METHODS:
            return _failed(f"postgres has no step {method!r}; its steps: {', '.join(_METHODS)}", start)
        timeout = float(args.get("timeout", 30.0))
        deadline = start + timeout
        try:
            params = _params(args.get("params"))
            conn = self._session(timeout, deadline)
            with _Watchdog(conn, deadline) as watchdog:
                try:
                    self._set_statement_timeout(conn, timeout)
                    rows, affected = _execute(conn, args["sql"], params, method == "query")
                    left_open = conn.info.transaction_status != TransactionStatus.IDLE
                    if left_open:
                        conn.execute("ROLLBACK")
                except psycopg.Error as exc:
                    raise _StepFailed(self._error_text(exc, watchdog.fired, timeout)) from None
        except _StepFailed as exc:
            self._drop_if_broken()
            return _failed(str(exc), start)
        if left_open:
            return _failed(
                "the SQL left a transaction open, so it was rolled back; each step runs in its own "
                "session state: send BEGIN ... COMMIT within one step",
                start,
            )
        data: Any = rows if method == "query" else FrozenDict(rows_affected=affected)
        return Response(
            body=json.dumps(thaw(data), separators=(",", ":"), ensure_ascii=False),
            data=data,
            ok=True,
            duration_ms=_ms(start),
            rows_affected=None if method == "query" else affected,
        )

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass  # already broken: nothing left to release

    # -- the session ---------------------------------------------------------------------------

    def _session(self, timeout: float, deadline: float) -> _Conn:
        conn = self._conn
        if conn is not None and (conn.closed or conn.broken or _unsolicited_input(conn)):
            # Between steps an idle autocommit session receives nothing, so pending input means the
            # server ended it (shutdown, restart after a PANIC, pg_terminate_backend): its FATAL is
            # waiting there. Reconnect now rather than fail this step on the old session's error.
            self._disconnect()
            conn = None
        if conn is None:
            conn = self._connect(timeout, deadline)
            self._conn = conn
        return conn

    def _connect(self, timeout: float, deadline: float) -> _Conn:
        remaining = deadline - time.monotonic()
        statement_ms = _statement_timeout_ms(timeout)
        kwargs: dict[str, Any] = {
            "autocommit": True,
            # No server-side prepared statements: each step is independent, and a cached plan would
            # fail with "cached plan must not change result type" after the spec changes a table.
            "prepare_threshold": None,
            # psycopg rounds this up to 2 s at least; the step's own wait below is exact.
            "connect_timeout": max(2, math.ceil(remaining)),
            "options": f"-c statement_timeout={statement_ms}",
            "application_name": "faultbox",
        }
        attempt = _ConnectAttempt(self._conninfo, kwargs)
        conn = attempt.wait(remaining)
        if conn is None:
            raise _StepFailed(f"timeout: no connection to PostgreSQL at {self.host}:{self.port} within {timeout:g}s")
        if isinstance(conn, psycopg.Error):
            raise _StepFailed(_clean(str(conn)))
        _install_loaders(conn)
        self._statement_timeout_ms = statement_ms
        return conn

    def _set_statement_timeout(self, conn: _Conn, timeout: float) -> None:
        wanted = _statement_timeout_ms(timeout)
        if wanted != self._statement_timeout_ms:  # a round trip only when the step's timeout changes
            conn.execute(f"SET statement_timeout = {wanted}")
            self._statement_timeout_ms = wanted

    def _drop_if_broken(self) -> None:
        conn = self._conn
        if conn is not None and (conn.closed or conn.broken):
            self._disconnect()

    def _error_text(self, exc: psycopg.Error, timed_out: bool, timeout: float) -> str:
        if timed_out:
            return (
                f"timeout: no reply from PostgreSQL at {self.host}:{self.port} within {timeout:g}s "
                "(the connection was closed)"
            )
        if exc.sqlstate:
            return f"{exc.sqlstate} {exc.diag.message_primary or _clean(str(exc))}"
        return _clean(str(exc))


# -- executing ---------------------------------------------------------------------------------


def _execute(conn: _Conn, sql: str, params: list[Any] | None, want_rows: bool) -> tuple[Any, int]:
    """(rows of the last statement that returned rows, sum of the statements' row counts)."""
    cur = psycopg.RawCursor(conn)  # $1 placeholders; no params -> simple protocol, many statements
    try:
        cur.execute(sql, params)
        rows: FrozenList = FrozenList()
        affected = 0
        while True:
            if cur.rowcount > 0:
                affected += cur.rowcount
            if cur.description is not None and want_rows:
                names = _column_names([col.name for col in cur.description])
                rows = FrozenList(
                    FrozenDict(zip(names, (_native(v) for v in row), strict=True)) for row in cur.fetchall()
                )
            if not cur.nextset():
                break
        return rows, affected
    finally:
        cur.close()


def _column_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0) + 1
        seen[name] = count
        out.append(name if count == 1 else f"{name}_{count}")
    return out


def _params(params: Any) -> list[Any] | None:
    if params is None:
        return None
    return [_param(p) for p in params]


def _param(value: Any) -> Any:
    if isinstance(value, dict):
        return Jsonb(thaw(value))
    if isinstance(value, (list, tuple)):
        return [_param(v) for v in value]
    return value


def _native(value: Any) -> Any:
    """A value Starlark code can compare and json.encode (see the module docstring)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            return "NaN" if value.is_nan() else ("-Infinity" if value < 0 else "Infinity")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (datetime, date, dtime)):
        return value.isoformat()
    if isinstance(value, timedelta):  # only when the interval loader below was bypassed
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "\\x" + raw.hex()
    if isinstance(value, dict):
        return FrozenDict((str(k), _native(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return FrozenList(_native(v) for v in value)
    return str(value)  # uuid, inet, ranges, enums of unknown oid...


# -- loaders -----------------------------------------------------------------------------------


class _LenientLoader(Loader):
    """Wraps a date/timestamp loader: values Python cannot hold ('infinity', year 10000, BC dates)
    come back as the server's text instead of failing the whole step."""

    base: type[Loader]

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._inner = self.base(oid, context)

    def load(self, data: Any) -> Any:
        try:
            return self._inner.load(data)
        except psycopg.DataError:
            return bytes(data).decode("utf-8", "replace")


def _install_loaders(conn: _Conn) -> None:
    adapters = conn.adapters
    for name in ("date", "timestamp", "timestamptz"):
        info = adapters.types.get(name)
        base = adapters.get_loader(info.oid, Format.TEXT) if info is not None else None
        if info is not None and base is not None:
            # The psycopg_binary loaders are final C classes: wrap, do not subclass.
            adapters.register_loader(name, type(f"Lenient{base.__name__}", (_LenientLoader,), {"base": base}))
    # Python's timedelta folds months into days; the server's text keeps "1 mon 2 days".
    adapters.register_loader("interval", TextLoader)


# -- connection helpers ------------------------------------------------------------------------


def _conninfo(host: str, port: int, options: Mapping[str, Any]) -> str:
    """The DSN of a helper-started server (options["endpoint"]), else one built from the interface
    and credentials from the helper's options or the service's env (POSTGRES_USER...)."""
    endpoint = options.get("endpoint")
    if endpoint:
        return str(endpoint)
    env: Mapping[str, Any] = options.get("env") or {}
    user = options.get("user") or env.get("POSTGRES_USER") or "postgres"
    password = options.get("password") or env.get("POSTGRES_PASSWORD")
    database = options.get("database") or env.get("POSTGRES_DB") or "postgres"
    auth = quote(str(user), safe="")
    if password:
        auth += ":" + quote(str(password), safe="")
    return f"postgresql://{auth}@{host}:{port}/{quote(str(database), safe='')}?sslmode=disable"


def _statement_timeout_ms(timeout: float) -> int:
    return max(1, int((timeout - min(_CANCEL_MARGIN, timeout * 0.1)) * 1000))


def _unsolicited_input(conn: _Conn) -> bool:
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True  # no usable socket: reconnect


class _ConnectAttempt:
    """psycopg.connect in a helper thread, so that the step can stop waiting at its own deadline.
    A connection that arrives after the step gave up is closed by the thread itself."""

    def __init__(self, conninfo: str, kwargs: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._abandoned = False
        self._result: _Conn | psycopg.Error | None = None
        thread = threading.Thread(target=self._run, args=(conninfo, kwargs), name="faultbox-pg-connect", daemon=True)
        thread.start()

    def _run(self, conninfo: str, kwargs: dict[str, Any]) -> None:
        result: _Conn | psycopg.Error
        try:
            result = psycopg.connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            result = exc
        with self._lock:
            if self._abandoned:
                if isinstance(result, psycopg.Connection):
                    result.close()
                return
            self._result = result
            self._done.set()

    def wait(self, timeout: float) -> _Conn | psycopg.Error | None:
        """The connection, the connect error, or None when `timeout` passed first."""
        self._done.wait(max(timeout, 0.0))
        with self._lock:
            if not self._done.is_set():
                self._abandoned = True
                return None
            return self._result


class _Watchdog:
    """Shuts the session's socket down at the step's deadline if the server has not answered.

    statement_timeout only helps when the server runs: a stopped, hung or partitioned server never
    sends the cancel. shutdown() (not close(): the fd stays psycopg's) wakes libpq's wait at once
    with EOF; the lock makes sure it never hits a socket after the step is over."""

    def __init__(self, conn: _Conn, deadline: float) -> None:
        self._fd = conn.fileno()
        self._lock = threading.Lock()
        self._armed = True
        self.fired = False
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0.0), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._armed = False
        self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            if not self._armed:
                return
            self.fired = True
            _shutdown(self._fd)


def _shutdown(fd: int) -> None:
    """Shut a socket down without closing its fd (it stays libpq's): a blocked wait on it returns."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _clean(text: str) -> str:
    """libpq's multi-line messages on one line."""
    return re.sub(r"\s+", " ", text).strip()


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def _failed(error: str, start: float) -> Response:
    return Response(ok=False, error=error, duration_ms=_ms(start))
