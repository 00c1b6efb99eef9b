"""Redis as a local process (Debian's redis-server), in the foreground, AOF on by default.

With `appendfsync always` every write is fsynced before the reply, so fsync/write faults show Redis's
real reaction (fsync EIO makes it exit, AOF ENOSPC gives MISCONF errors: DECISIONS §24).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from urllib.parse import quote

from faultbox.deps.base import (
    LOCALHOST,
    SETUP_COMMAND,
    DependencyMissing,
    DependencyNotReady,
    ServerPlan,
    check_port_free,
    current_owner,
    find_executable,
    fresh_dir,
    frozen_env,
)

PACKAGE = "redis-server"
_DEFAULT_DIRS = ("/usr/bin", "/usr/local/bin")
_FSYNC_MODES = ("always", "everysec", "no")


def find_binary(search_path: Sequence[str] | None = None) -> str:
    """Path of redis-server; raises DependencyMissing naming the Debian package."""
    found = find_executable("redis-server", search_path, _DEFAULT_DIRS)
    if found is None:
        raise DependencyMissing(
            f"redis-server not found; install the Debian package {PACKAGE}: "
            f"run {SETUP_COMMAND} (or apt-get install -y {PACKAGE})",
            PACKAGE,
        )
    return found


def url(port: int, password: str | None = None) -> str:
    auth = f":{quote(password, safe='')}@" if password is not None else ""
    return f"redis://{auth}{LOCALHOST}:{port}/0"


def prepare(
    workdir: str,
    port: int,
    *,
    appendonly: bool = True,
    appendfsync: str = "always",
    password: str | None = None,
    search_path: Sequence[str] | None = None,
) -> ServerPlan:
    """A fresh data dir `<workdir>/redis-<port>` and how to run redis-server on 127.0.0.1:port."""
    if appendfsync not in _FSYNC_MODES:
        raise ValueError(f"appendfsync must be one of {', '.join(_FSYNC_MODES)}, not {appendfsync!r}")
    check_port_free(port)
    binary = find_binary(search_path)
    owner = current_owner()  # Redis runs fine as root; no user switch needed
    data = Path(workdir) / f"redis-{port}"
    fresh_dir(data, owner)
    argv = [binary]
    if password is not None:
        # In a config file, not on the command line where `ps` would show it.
        conf = data / "auth.conf"
        conf.write_text(f'requirepass "{_quote(password)}"\n')
        os.chmod(conf, 0o600)
        argv.append(str(conf))
    argv += [
        "--port", str(port),
        "--bind", LOCALHOST,
        "--dir", str(data),
        "--save", "",  # no RDB snapshots: the AOF (or nothing) is the persistence under test
        "--daemonize", "no",
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", appendfsync,
        "--logfile", "",  # log to stdout, where the runner collects it
    ]  # fmt: skip
    return ServerPlan(
        kind="redis",
        argv=tuple(argv),
        env=frozen_env(),
        cwd=str(data),
        user=None,
        group=None,
        data_dir=str(data),
        stop_signal=signal.SIGTERM,  # Redis saves nothing more (no RDB) and exits at once
        stop_grace=5.0,
        port=port,
        endpoint=url(port, password),
        prober=partial(_probe, port, password, str(data)),
    )


_STATE_KEYS = 10_000  # beyond this many keys, only the count is compared


def state(endpoint: str, timeout: float = 10.0) -> dict[str, str]:
    """What a kept server's data is, to compare after a reset= with what a fresh start and its
    seed= made: every key of every database with its type and a digest of its value."""
    import hashlib

    import redis as redis_py

    out: dict[str, str] = {}
    for db_name in _databases(endpoint, timeout):
        # The endpoint names database 0, and a URL's database wins over db=: name each in the URL.
        url_n = endpoint.rsplit("/", 1)[0] + f"/{int(db_name[2:])}"
        db = redis_py.Redis.from_url(url_n, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            size = int(db.dbsize())
            if size > _STATE_KEYS:
                out[db_name] = f"{size} keys"
                continue
            for key in sorted(db.scan_iter(count=1000)):
                digest = hashlib.sha256(db.dump(key) or b"").hexdigest()[:12]
                expiry = "expires" if int(db.pttl(key)) >= 0 else "no expiry"
                out[f"{db_name} key {_text(key)}"] = f"{_text(db.type(key))}, {expiry} (digest {digest})"
        finally:
            db.close()
    return out


def _databases(endpoint: str, timeout: float) -> list[str]:
    import redis as redis_py

    client = redis_py.Redis.from_url(endpoint, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return sorted(str(name) for name in client.info("keyspace"))  # "db0", "db3": those holding keys
    finally:
        client.close()


def _text(value: object) -> str:
    return value.decode(errors="backslashreplace") if isinstance(value, bytes) else str(value)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _probe(port: int, password: str | None, data_dir: str, timeout: float) -> None:
    """PING through the protocol (a Redis still loading its AOF answers LOADING: not ready), then
    check `dir` so that a stale Redis left on the port does not pass."""
    import redis as redis_py  # deferred: only runs that use Redis pay for the import
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis_py.Redis(
        host=LOCALHOST,
        port=port,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        # One attempt: redis-py's default retries with backoff turn a refused connect into ~4 s.
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
        dirs = client.config_get("dir")
    except redis_py.RedisError as exc:
        raise DependencyNotReady(f"redis on {LOCALHOST}:{port}: {exc}") from exc
    finally:
        client.close()
    actual = dirs.get("dir") if isinstance(dirs, dict) else None
    if actual is None or os.path.realpath(str(actual)) != os.path.realpath(data_dir):
        raise DependencyNotReady(f"another Redis answers on {LOCALHOST}:{port} (dir {actual})")
