"""`wal` events: PostgreSQL logical decoding, read with wal2json (format 2) over psycopg2.

One event per committed row change, in commit order:

    type "wal", service = the name given, data = None (the trace derives a string view), fields:
      action    INSERT | UPDATE | DELETE | TRUNCATE
      schema, table
      lsn       the change's LSN, text form "0/16B3748"
      xid       the transaction id
      <column>  every column of the new row as text: NULL -> field absent, booleans "true"/"false",
                numbers exactly as PostgreSQL prints them ("1.10" stays "1.10"), json as its text.
                A column named like one of the fields above is emitted as "col_<name>".
      old_<key> UPDATE and DELETE: the old replica-identity columns wal2json sends (the primary key
                with the default REPLICA IDENTITY; every column with REPLICA IDENTITY FULL).
                A DELETE carries no new row, so its identity columns also appear under their own names.
    Unchanged TOASTed columns of an UPDATE are absent (wal2json does not send them).

Design (DECISIONS §18, §19, §23):
* A persistent slot named faultbox_<random>, so the position survives a server crash; start() drops
  *inactive* faultbox_* slots left by crashed runs (an inactive slot pins WAL forever).
* The stream is read in a tight loop (read_message + select), never consume_stream's sleeps:
  ~1 ms from COMMIT to event.
* Rows are held until their COMMIT message and emitted together, so a stream that drops mid
  transaction never emits half of it.
* After a PostgreSQL restart (a PANIC under an fsync fault, a kill) the stream is reconnected and
  re-sent from the slot's last *persisted* position: at-least-once. Transactions whose commit LSN is
  at or below the last one emitted are skipped: exactly-once in the trace. If the server came back
  with less WAL than we had decoded (a faked write, then a crash), the threshold drops to the
  server's end of WAL, so the new transactions that reuse those LSNs are not mistaken for duplicates.
* barrier() reads pg_current_wal_flush_lsn() and waits until the decoder has passed it. The position
  advances at each COMMIT and with the server's keepalives (which carry how far the decoder read, so
  WAL with no row change counts too); barrier() asks for a keepalive rather than waiting for one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import select
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from faultbox.sources import Emit, ServerDown, SourceError

log = logging.getLogger(__name__)

# format 2: one JSON document per change, plus B(egin)/C(ommit) records with the commit's end LSN.
# Numbers are parsed as text (parse_int/parse_float=str) so that their spelling is kept.
_OPTIONS = {
    "format-version": "2",
    "include-xids": "1",
    "include-lsn": "1",
    "include-transaction": "1",
    "include-types": "0",
    "include-timestamp": "0",
}
_ACTIONS = {"I": "INSERT", "U": "UPDATE", "D": "DELETE", "T": "TRUNCATE"}
_META = frozenset({"action", "schema", "table", "lsn", "xid"})
_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")
_STALE_PREFIX = "faultbox_"

_COUNTERS = (
    "events",  # wal events emitted
    "transactions",  # committed transactions emitted
    "duplicates_skipped",  # rows re-sent after a reconnect and skipped by LSN
    "messages",  # wal2json documents received
    "reconnects",
    "errors",  # stream or connection errors seen (each followed by a reconnect attempt)
    "emit_errors",
    "stale_slots_dropped",
    "wal_regressions",  # the server came back with less WAL than we had decoded
    "barriers",
    "slot_created",
    "slot_dropped",
)

_BACKOFF_MIN = 0.02  # reconnect: PostgreSQL is back 0.3-0.8 s after a PANIC (DECISIONS §23)
_BACKOFF_MAX = 0.25
_IDLE_TICK = 1.0  # select timeout; barrier() and stop() wake the reader through a pipe
_FEEDBACK_EVERY = 5.0  # also proves the socket is alive: a send on a dead one raises
_REPLY_EVERY = 0.005  # how often a waiting barrier asks the server for a keepalive


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass
class _Txn:
    """Rows of the transaction being received; emitted at its COMMIT."""

    rows: list[dict[str, str]] = field(default_factory=list)


class WalSource:
    """Streams row changes of one PostgreSQL database (the one named in `dsn`) as `wal` events."""

    def __init__(
        self,
        dsn: str,
        service: str,
        emit: Emit,
        *,
        slot: str | None = None,
        plugin: str = "wal2json",
        connect_timeout: float = 2.0,
    ) -> None:
        if plugin != "wal2json":
            raise ValueError(f"unsupported logical decoding plugin {plugin!r}; only wal2json is decoded")
        self._slot = slot or f"{_STALE_PREFIX}{secrets.token_hex(6)}"
        if not _SLOT_NAME.match(self._slot):
            raise ValueError(f"invalid replication slot name {self._slot!r} (use [a-z0-9_], at most 63)")
        self._dsn = dsn
        self._service = service
        self._emit = emit
        self._plugin = plugin
        self._connect_timeout = max(1, round(connect_timeout))  # libpq takes whole seconds

        self._cond = threading.Condition()
        self._pos = 0  # decoder position: every commit at or below it has been emitted
        self._connected = False
        self._failure: str | None = None  # unrecoverable: every barrier() raises it
        self._last_error: str | None = None
        self._want_reply = False
        # Fixed keys: stats() copies the dict while the reader thread updates it.
        self._counts = dict.fromkeys(_COUNTERS, 0)

        # Reader-thread state.
        self._floor = 0  # commit end LSN of the last emitted transaction (de-dup threshold)
        self._txn: _Txn | None = None

        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._qconn: Any = None  # barrier's own (async) connection
        self._qlock = threading.Lock()

    @property
    def slot(self) -> str:
        return self._slot

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the slot (after dropping stale inactive faultbox_* ones) and start streaming.

        Creating a slot waits for transactions already open on the server to finish: start the
        source before the system under test opens long transactions.
        """
        if self._thread is not None:
            raise RuntimeError("WalSource already started")
        try:
            self._reclaim_stale_slots()
            conn, cur = self._open_stream(create=True)
        except psycopg2.Error as exc:
            if self._counts["slot_created"]:  # created, then the stream failed: do not leave it
                self._drop_slot(deadline=time.monotonic() + 2)
            raise SourceError(f"wal source for {self._service!r}: {_start_hint(exc)}") from exc
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(
            target=self._run, args=(conn, cur), name=f"faultbox-wal-{self._service}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop reading and drop the slot. Safe to call twice; never raises."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self._wake()
        thread.join(timeout=10)
        # The slot lives in the server, so a server that stays down keeps it: bounded retries (the
        # next start() on that server reclaims it as stale).
        self._drop_slot(deadline=time.monotonic() + 3)
        with self._qlock:
            _close(self._qconn)
            self._qconn = None
        if thread.is_alive():  # stuck in a connect: leave it the pipe rather than close an fd in use
            log.warning("wal reader for %s did not stop within 10 s", self._service)
            return
        fds = (self._wake_r, self._wake_w)
        self._wake_r = self._wake_w = -1  # before closing: _wake() must not write to a reused fd
        for fd in fds:
            os.close(fd)

    def stats(self) -> dict[str, int]:
        with self._cond:
            out = dict(self._counts)
            out["decoded_lsn"] = self._pos
            out["connected"] = int(self._connected)
        return out

    # -- barrier --------------------------------------------------------------------------------

    def barrier(self, timeout: float) -> None:
        """Return once every transaction committed before this call is in the trace.

        Idle, this costs one query (~1 ms). When the server does not answer (stopped, crashed,
        restarting) it raises ServerDown at once: nothing was committed since, and the stream catches
        up when the server is back. While the stream lags a live server it waits, up to `timeout`;
        then it raises SourceError with both LSNs.

        "Restarting" includes a postmaster that answers but refuses connections (SQLSTATE 57P03:
        starting up, in recovery, shutting down), and a commit acknowledged just before a crash
        reset is then not in the trace yet: it arrives when the stream reconnects. Waiting through
        recovery here would hold the runner's fault scope open: its barrier runs inside the scope of
        the step that crashed the server, so recovery would run under that step's fault. A caller
        that must see such a commit waits for the server to be back first (e.g. for
        stats()["reconnects"] to grow), then calls barrier().
        """
        deadline = time.monotonic() + timeout
        self._raise_if_failed()
        if self._thread is None:
            raise SourceError(f"wal source for {self._service!r} is not running")
        target = self._server_flush_lsn(deadline, timeout)
        last_ask = 0.0
        with self._cond:
            self._counts["barriers"] += 1
            while not (self._connected and self._pos >= target):
                if self._failure is not None:
                    raise SourceError(self._failure)
                now = time.monotonic()
                if now >= deadline:
                    state = "connected" if self._connected else "disconnected"
                    raise SourceError(
                        f"wal barrier for {self._service!r} timed out after {timeout:g}s: decoder at "
                        f"{format_lsn(self._pos)}, server flush LSN {format_lsn(target)}, stream {state}; "
                        f"last error: {self._last_error}"
                    )
                if self._connected and now - last_ask >= _REPLY_EVERY:
                    # WAL without row changes moves the decoder but sends nothing: ask for a keepalive.
                    self._want_reply = True
                    self._wake()
                    last_ask = now
                self._cond.wait(min(deadline - now, _REPLY_EVERY))
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        with self._cond:
            if self._failure is not None:
                raise SourceError(self._failure)

    def _server_flush_lsn(self, deadline: float, timeout: float) -> int:
        last: Exception | None = None
        with self._qlock:
            while True:
                fresh = self._qconn is None
                try:
                    if self._qconn is None:
                        self._qconn = psycopg2.connect(self._dsn, async_=True)
                        _wait_async(self._qconn, deadline)
                    cur = self._qconn.cursor()
                    cur.execute("SELECT pg_current_wal_flush_lsn()::text")
                    _wait_async(self._qconn, deadline)
                    row = cur.fetchone()
                    return parse_lsn(row[0])
                except psycopg2.OperationalError as exc:
                    _close(self._qconn)
                    self._qconn = None
                    if not fresh:
                        last = exc
                        continue  # a connection from before a restart: try a new one at once
                    # Refused, starting up, in crash recovery: the server commits nothing now. Waiting
                    # here would keep a fault active longer than the step that exposed it.
                    raise ServerDown(f"{self._service}: {str(exc).strip().splitlines()[0]}") from None
                except (psycopg2.Error, TimeoutError, OSError) as exc:
                    last = exc
                    _close(self._qconn)
                    self._qconn = None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    with self._cond:
                        pos = self._pos
                    raise SourceError(
                        f"wal barrier for {self._service!r} timed out after {timeout:g}s: could not read "
                        f"the server's flush LSN ({str(last).strip()}); decoder at {format_lsn(pos)}"
                    )
                time.sleep(min(_BACKOFF_MIN, remaining))

    # -- slots ----------------------------------------------------------------------------------

    def _reclaim_stale_slots(self) -> None:
        conn = psycopg2.connect(self._dsn, connect_timeout=self._connect_timeout)
        try:
            conn.autocommit = True
            cur = conn.cursor()
            cur.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE %s AND NOT active",
                (_STALE_PREFIX.replace("_", r"\_") + "%",),
            )
            for (name,) in cur.fetchall():
                try:
                    cur.execute("SELECT pg_drop_replication_slot(%s)", (name,))
                    self._counts["stale_slots_dropped"] += 1
                    log.info("dropped stale replication slot %s", name)
                except psycopg2.Error as exc:  # became active meanwhile, or another database's
                    log.warning("could not drop stale replication slot %s: %s", name, exc)
        finally:
            conn.close()

    def _drop_slot(self, deadline: float) -> None:
        while True:
            try:
                conn = psycopg2.connect(self._dsn, connect_timeout=self._connect_timeout)
                try:
                    conn.autocommit = True
                    conn.cursor().execute("SELECT pg_drop_replication_slot(%s)", (self._slot,))
                finally:
                    conn.close()
                self._counts["slot_dropped"] = 1
                return
            except psycopg2.Error as exc:
                if getattr(exc, "pgcode", None) == "42704":  # undefined_object: already gone
                    return
                # 55006: still active while its walsender exits; or the server is down.
                if time.monotonic() >= deadline:
                    log.warning("could not drop replication slot %s: %s", self._slot, exc)
                    return
            time.sleep(0.05)

    # -- reader thread --------------------------------------------------------------------------

    def _open_stream(self, create: bool = False) -> tuple[Any, Any]:
        conn = psycopg2.connect(
            self._dsn,
            connection_factory=psycopg2.extras.LogicalReplicationConnection,
            connect_timeout=self._connect_timeout,
        )
        try:
            cur = conn.cursor()
            if create:
                cur.execute(f"CREATE_REPLICATION_SLOT {self._slot} LOGICAL {self._plugin}")
                consistent = parse_lsn(cur.fetchone()[1])
                self._counts["slot_created"] = 1
                with self._cond:
                    self._pos = consistent
            cur.execute("IDENTIFY_SYSTEM")
            server_flush = parse_lsn(cur.fetchone()[2])
            with self._cond:
                if server_flush < self._pos:
                    # The server came back with less WAL than we decoded: those LSNs will be reused.
                    self._counts["wal_regressions"] += 1
                    self._pos = server_flush
                    self._floor = min(self._floor, server_flush)
            # start_lsn=0: resume at the slot's confirmed position; duplicates are skipped by LSN.
            cur.start_replication(slot_name=self._slot, decode=False, options=_OPTIONS)
        except BaseException:
            conn.close()
            raise
        self._txn = None
        with self._cond:
            self._connected = True
            self._cond.notify_all()
        return conn, cur

    def _run(self, conn: Any, cur: Any) -> None:
        backoff = _BACKOFF_MIN
        try:
            while not self._stop.is_set():
                if cur is None:
                    try:
                        conn, cur = self._open_stream()
                        self._counts["reconnects"] += 1
                        backoff = _BACKOFF_MIN
                    except psycopg2.Error as exc:
                        if not _transient(exc):
                            self._fail(f"wal source for {self._service!r} cannot reconnect: {exc}")
                            return
                        self._note_error(exc)
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, _BACKOFF_MAX)
                    continue
                try:
                    self._pump(cur)
                except psycopg2.Error as exc:
                    with self._cond:
                        self._connected = False
                    self._note_error(exc)
                    _close(conn)
                    conn = cur = None
                    if not _transient(exc):
                        self._fail(f"wal source for {self._service!r} lost its stream: {exc}")
                        return
        except BaseException as exc:  # a bug: never die silently, barrier() will raise it
            log.exception("wal reader crashed")
            self._fail(f"wal source for {self._service!r} crashed: {exc!r}")
        finally:
            _close(conn)
            with self._cond:
                self._connected = False
                self._cond.notify_all()

    def _pump(self, cur: Any) -> None:
        fed_back, fed_at = -1, 0.0
        empty_wakes = 0
        while not self._stop.is_set():
            msg = cur.read_message()
            if msg is not None:
                empty_wakes = 0
                self._on_message(msg.payload)
                continue
            # Drained what has arrived: advance with the last keepalive, then report our position.
            if self._txn is None and cur.wal_end > self._pos:
                with self._cond:
                    self._pos = cur.wal_end
                    self._cond.notify_all()
            now = time.monotonic()
            if self._pos != fed_back or now - fed_at > _FEEDBACK_EVERY:
                cur.send_feedback(write_lsn=self._pos, flush_lsn=self._pos, force=True)
                fed_back, fed_at = self._pos, now
            if self._want_reply:
                self._want_reply = False
                cur.send_feedback(reply=True)
            readable, _, _ = select.select([cur, self._wake_r], [], [], _IDLE_TICK)
            if self._wake_r in readable:
                os.read(self._wake_r, 4096)
            elif readable:
                # Readable but no message, again and again: the copy ended without an error.
                empty_wakes += 1
                if empty_wakes > 1000:
                    raise psycopg2.OperationalError("replication stream ended")

    def _on_message(self, payload: bytes) -> None:
        self._counts["messages"] += 1
        change = json.loads(payload, parse_float=str, parse_int=str)
        action = change.get("action")
        if action == "B":
            self._txn = _Txn()
        elif action == "C":
            # "nextlsn" is the commit's end LSN: it grows in commit order, so it is the de-dup key.
            txn, self._txn = self._txn, None
            self._commit(txn.rows if txn else [], parse_lsn(change["nextlsn"]))
        elif action in _ACTIONS:
            row = row_fields(change)
            if self._txn is not None:
                self._txn.rows.append(row)
            else:  # not expected with include-transaction; keep the row rather than lose it
                self._commit([row], parse_lsn(change.get("lsn", "0/0")))
        # "M" (pg_logical_emit_message) and anything newer: not row changes, ignored.

    def _commit(self, rows: list[dict[str, str]], end: int) -> None:
        if end <= self._floor:
            self._counts["duplicates_skipped"] += len(rows)
        else:
            for row in rows:
                try:
                    self._emit("wal", self._service, row, None)
                    self._counts["events"] += 1
                except BaseException as exc:  # the callback must not kill the reader; surface it
                    self._counts["emit_errors"] += 1
                    self._fail(f"wal source for {self._service!r}: the emit callback raised {exc!r}")
            self._counts["transactions"] += 1
            self._floor = end
        with self._cond:
            if end > self._pos:
                self._pos = end
                self._cond.notify_all()

    # -- helpers --------------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except (BlockingIOError, OSError):
                pass  # the pipe is full: the reader is awake anyway

    def _note_error(self, exc: BaseException) -> None:
        with self._cond:
            self._last_error = str(exc).strip() or repr(exc)
            self._counts["errors"] += 1

    def _fail(self, message: str) -> None:
        log.error("%s", message)
        with self._cond:
            if self._failure is None:
                self._failure = message
            self._cond.notify_all()


def row_fields(change: Mapping[str, Any]) -> dict[str, str]:
    """The string fields of one wal2json (format 2) change; see the module docstring."""
    action = _ACTIONS[change["action"]]
    fields = {
        "action": action,
        "schema": str(change.get("schema", "")),
        "table": str(change.get("table", "")),
        "lsn": str(change.get("lsn", "")),
        "xid": str(change.get("xid", "")),
    }
    columns = change.get("columns") or ()
    identity = change.get("identity") or ()
    for col in columns:
        _put(fields, col["name"], col.get("value"))
    for col in identity:
        _put(fields, "old_" + col["name"], col.get("value"))
    if action == "DELETE" and not columns:
        for col in identity:
            _put(fields, col["name"], col.get("value"))
    return fields


def _put(fields: dict[str, str], name: str, value: Any) -> None:
    text = value_text(value)
    if text is None:
        return
    fields[f"col_{name}" if name in _META else name] = text


def value_text(value: Any) -> str | None:
    """A decoded JSON value as a field string: None stays None (the field is left out)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _transient(exc: BaseException) -> bool:
    """Whether reconnecting can help: connection-level errors and a server shutting down, starting
    up or recovering; not a dropped slot, a missing plugin or bad credentials."""
    code = getattr(exc, "pgcode", None)
    if code is None:
        return True
    return code[:2] in ("08", "53", "57") or code == "55006"


def _start_hint(exc: psycopg2.Error) -> str:
    text = str(exc).strip()
    if "wal2json" in text and ("could not access file" in text or getattr(exc, "pgcode", None) == "58P01"):
        return f"{text} (install the Debian package postgresql-15-wal2json: run ./scripts/setup)"
    if "wal_level" in text:
        return f"{text} (start PostgreSQL with -c wal_level=logical)"
    return f"could not start logical decoding: {text}"


def _wait_async(conn: Any, deadline: float) -> None:
    """Drive an async psycopg2 connection to completion, bounded by `deadline` (a hung server must
    not hang a barrier)."""
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer from PostgreSQL")
        if state == psycopg2.extensions.POLL_READ:
            select.select([conn.fileno()], [], [], remaining)
        elif state == psycopg2.extensions.POLL_WRITE:
            select.select([], [conn.fileno()], [], remaining)
        else:
            raise psycopg2.OperationalError(f"unexpected poll state {state}")


def _close(conn: Any) -> None:
    if conn is not None:
        try:
            conn.close()
        except psycopg2.Error:
            pass
