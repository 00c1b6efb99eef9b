"""Redis steps over redis-py: one connection per client, raw RESP2 replies.

`.data` has the reference's shape, `{"value": reply}`, for every step, except that a list reply is
the list itself, which also answers `["value"]` (the reference's docs and its seed page read
`len(r.data)` of `keys()`: model/response.py ValueList). `.value` is the reply itself (faultbox's
shape, what `.data` was before the two were reconciled: docs/decisions.md):

    get(key)                  .value = "value" or None     .data = {"value": "value"}
    set(key, value, ex=None)  .value = "OK"                 (ex = expiry in seconds)
    delete(key), del(key)     .value = 1 or 0               (keys removed)
    keys(pattern="*")         .value = ["a", "b"]           (sorted: KEYS has no order)
    incr(key)                 .value = 2
    hget(key, field)          .value = "value" or None
    hset(key, field, value)   .value = 1 or 0               (fields added)
    lpush(key, value)         .value = 3                    (length of the list after the push)
    rpush(key, value)         .value = 3
    lrange(key, 0, -1)        .value = ["c", "b", "a"]      (start/stop: ints, or their text)
    ping()                    .value = "PONG"
    command(args=[...])       .value = the reply decoded: str, int, None, or nested lists of them
    command(cmd="SET", args=["k", "v"]) or command(cmd="GET", args="k"): the reference's spelling

Every step also takes `user=` and `password=` (the reference's: that step authenticates with them
instead of the service's credentials). `body` is the JSON text of `data`. Values sent are strings
as they are, bytes as they are, numbers as their decimal text, anything else (bool, None, list,
dict) as its JSON text. Replies are decoded as UTF-8, with backslash escapes for bytes that are not.

The replies are redis-py's raw ones (no response callbacks), so `set` is "OK" and `ping` "PONG" as
the server sent them, not True. An error reply (WRONGTYPE, MISCONF, OOM, NOAUTH, ERR ...) is ok=False
with error = the server's message including its code ("ERR unknown command 'X' ...", which redis-py
would shorten); a refused, reset or timed-out connection is ok=False too. The connection is reopened
by the next step after any connection error, and before a step when the idle connection was closed by
the server in between (a restart under faults): such a step runs on a fresh connection instead of
failing on the stale one. No command is ever retried, so an INCR is never applied twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import redis as redis_py
from redis.backoff import NoBackoff
from redis.retry import Retry

from faultbox._util.frozen import freeze, thaw
from faultbox.model.response import Response, reference_value

# redis-py leaves Connection's methods unannotated; mypy --strict refuses calls to them, so the
# connection is handled as Any.
_Connection: Any = redis_py.Connection


def _command(method: str, args: Mapping[str, Any]) -> list[Any]:
    key = args.get("key")
    if method == "get":
        return ["GET", key]
    if method == "set":
        cmd = ["SET", key, _arg(args["value"])]
        if args.get("ex") is not None:
            cmd += ["EX", args["ex"]]
        return cmd
    if method in ("delete", "del"):
        return ["DEL", key]
    if method == "keys":
        return ["KEYS", args.get("pattern", "*")]
    if method == "incr":
        return ["INCR", key]
    if method == "hget":
        return ["HGET", key, args["field"]]
    if method == "hset":
        return ["HSET", key, args["field"], _arg(args["value"])]
    if method in ("lpush", "rpush"):
        return [method.upper(), key, _arg(args["value"])]
    if method == "lrange":
        return ["LRANGE", key, str(args.get("start", 0)), str(args.get("stop", -1))]
    if method == "ping":
        return ["PING"]
    if method == "command":
        # The spec layer made the reference's cmd=/args= one list (values.py, _redis_command).
        cmd = [_arg(a) for a in args["args"]]
        if not cmd:
            raise ValueError("redis command(): args is empty; give the command and its arguments")
        return cmd
    raise ValueError(f"redis has no step {method!r}")


class RedisClient:
    def __init__(self, host: str, port: int, options: Mapping[str, Any]) -> None:
        settings = _settings(host, port, options)
        self.host = settings["host"]
        self.port = settings["port"]
        kwargs: dict[str, Any] = dict(
            settings,
            decode_responses=True,
            encoding_errors="backslashreplace",  # a binary value must not fail the step
            socket_timeout=10.0,
            socket_connect_timeout=10.0,
            # No retries: redis-py would resend a command after a timeout (an INCR applied twice)
            # and spend seconds in backoff on a refused connection.
            retry=Retry(NoBackoff(), 0),
            protocol=2,  # plain replies: lists, not RESP3 maps/sets
            health_check_interval=0,  # no PING before commands: the trace shows only the steps
        )
        self._kwargs = kwargs
        self._default_auth = (kwargs["username"], kwargs["password"])
        self._auth = self._default_auth
        self._conn: Any = self._connection(kwargs)

    @staticmethod
    def _connection(kwargs: Mapping[str, Any]) -> Any:
        try:
            # No CLIENT SETINFO round trips on connect (redis-py >= 7.1 spells it driver_info).
            return _Connection(**kwargs, driver_info=None)
        except TypeError:
            return _Connection(**kwargs, lib_name=None, lib_version=None)

    def _authenticate_as(self, args: Mapping[str, Any]) -> None:
        """A step's user=/password= (the reference's) replace the service's credentials for that
        step: on a connection of their own, opened when they differ from the current one's."""
        wanted = self._default_auth
        if args.get("user") is not None or args.get("password") is not None:
            wanted = (args.get("user"), args.get("password"))
        if wanted != self._auth:
            self._conn.disconnect()
            self._conn = self._connection({**self._kwargs, "username": wanted[0], "password": wanted[1]})
            self._auth = wanted

    def call(self, method: str, args: Mapping[str, Any]) -> Response:
        start = time.monotonic()
        timeout = float(args.get("timeout", 10.0))
        deadline = start + timeout
        try:
            cmd = _command(method, args)
        except ValueError as exc:
            return _failed(str(exc), start)
        self._authenticate_as(args)
        conn = self._conn
        self._drop_stale()
        # Used when this step (re)connects; a reply is awaited with the time left (read_response).
        conn.socket_timeout = timeout
        conn.socket_connect_timeout = timeout
        try:
            conn.send_command(*cmd)
            reply = conn.read_response(timeout=max(deadline - time.monotonic(), 0.001))
        except redis_py.ResponseError as exc:
            # The whole error reply was read: the connection stays in step.
            return _failed(_server_error(exc), start)
        except redis_py.TimeoutError:
            conn.disconnect()  # a late reply would otherwise answer the next step
            return _failed(f"timeout: no reply from Redis at {self.host}:{self.port} within {timeout:g}s", start)
        except redis_py.RedisError as exc:  # ConnectionError, AuthenticationError, BusyLoadingError...
            conn.disconnect()
            return _failed(_server_error(exc), start)
        except OSError as exc:
            conn.disconnect()
            return _failed(f"connection to Redis at {self.host}:{self.port} failed: {exc}", start)
        if method == "keys" and isinstance(reply, list):
            reply = sorted(reply)
        value = freeze(reply)
        return Response(
            body=json.dumps({"value": thaw(value)}, separators=(",", ":"), ensure_ascii=False),
            data=reference_value(value),
            value=value,
            ok=True,
            duration_ms=_ms(start),
        )

    def close(self) -> None:
        self._conn.disconnect()

    def _drop_stale(self) -> None:
        """Disconnect an idle connection the server closed (or wrote to) since the last step.

        redis-py's pool does the same check before handing out a connection; we hold the connection
        ourselves, so we do it here. `_sock` is redis-py's socket: can_read() would connect."""
        conn = self._conn
        if getattr(conn, "_sock", None) is None:
            return
        try:
            stale = conn.can_read(timeout=0)
        except (redis_py.RedisError, OSError):
            stale = True
        if stale:
            conn.disconnect()


def _arg(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    return json.dumps(thaw(value), separators=(",", ":"), ensure_ascii=False)


def _server_error(exc: Exception) -> str:
    """The server's own text: redis-py strips the code of some errors ("ERR", "NOAUTH"...) and
    keeps it apart in status_code."""
    code = getattr(exc, "status_code", None)
    text = str(exc)
    return f"{code} {text}" if code and not text.startswith(f"{code} ") else text


def _settings(host: str, port: int, options: Mapping[str, Any]) -> dict[str, Any]:
    """host, port, db, username, password: the address from the helper's redis:// endpoint when
    there is one, else the interface. The password from the helper's options (the raw text), else
    the endpoint URL, else the service's env (REDIS_PASSWORD, with REDIS_USER for an ACL user)."""
    env: Mapping[str, Any] = options.get("env") or {}
    out: dict[str, Any] = {"host": host, "port": port, "db": 0, "username": None, "password": None}
    endpoint = options.get("endpoint")
    if endpoint:
        try:
            url = urlsplit(str(endpoint))
            out["host"] = url.hostname or host
            out["port"] = url.port or port
            path = url.path.strip("/")
            out["db"] = int(path) if path.isdigit() else 0
            out["username"] = unquote(url.username) if url.username else None
            out["password"] = unquote(url.password) if url.password else None
        except ValueError:
            # An unquoted password holding ':' or '/' makes the URL unparseable; the interface's
            # address and the options' password still work.
            out = {"host": host, "port": port, "db": 0, "username": None, "password": None}
    out["username"] = out["username"] or env.get("REDIS_USER") or None
    out["password"] = options.get("password") or out["password"] or env.get("REDIS_PASSWORD") or None
    return out


def _ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def _failed(error: str, start: float) -> Response:
    return Response(ok=False, error=error, duration_ms=_ms(start))
