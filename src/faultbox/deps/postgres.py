"""PostgreSQL as a local process: a data directory copied from a cached template cluster.

initdb costs ~0.5-1.3 s; copying a template costs ~0.03 s (DECISIONS §19). The template is built
once per machine and configuration under /var/tmp, atomically (temp dir + rename, under a file lock),
so concurrent runs never see half a cluster.

The server runs in the foreground as the `postgres` OS user when we are root (it refuses root), with
`wal_level=logical` so the `wal` event source can decode it, and `fsync=on`: users inject fsync
faults and must see PostgreSQL's real reaction (DECISIONS §23).

Process tree: every child of the postmaster (backends, walsenders, checkpointer...) calls setsid(),
so it is in a session and process group of its own: signalling the postmaster's group does not
reach them. A graceful stop (SIGINT to the postmaster) stops them; after a SIGKILL of the
postmaster they exit by themselves within milliseconds (postmaster-death detection), but a
restart on the same data dir must wait for them (PostgreSQL refuses to start while they hold the
old shared memory).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from types import MappingProxyType
from urllib.parse import quote

from faultbox.deps.base import (
    LOCALHOST,
    SETUP_COMMAND,
    DependencyError,
    DependencyMissing,
    DependencyNotReady,
    Owner,
    ServerPlan,
    check_port_free,
    ensure_reachable,
    find_executable,
    fresh_dir,
    frozen_env,
    server_owner,
)

PACKAGE = "postgresql-15"
OS_USER = "postgres"
DEFAULT_CACHE_DIR = "/var/tmp"
_BIN_GLOB = "/usr/lib/postgresql/*/bin"
# Bump when the template's content changes, so old caches are not reused.
_TEMPLATE_LAYOUT = 1
_NO_SETTINGS: Mapping[str, str] = MappingProxyType({})
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
# sun_path is 108 bytes; PostgreSQL also needs room for "<dir>/.s.PGSQL.<port>.lock".
_MAX_SOCKET_DIR = 107 - len("/.s.PGSQL.65535.lock")

# Our server settings. User `settings` come after them on the command line, so they win.
_BASE_SETTINGS: tuple[tuple[str, str], ...] = (
    ("listen_addresses", LOCALHOST),
    ("wal_level", "logical"),
    ("max_replication_slots", "16"),
    ("max_wal_senders", "16"),
    # The walwriter flushes async-commit WAL and wakes the decoder; 10 ms keeps `wal` events prompt
    # (the default 200 ms gave ~230 ms p50 latency, DECISIONS §19).
    ("wal_writer_delay", "10ms"),
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
    ("logging_collector", "off"),
    ("log_destination", "stderr"),
)


@dataclass(frozen=True)
class PgBinaries:
    bindir: str
    postgres: str
    initdb: str
    version: str  # e.g. "15.18 (Debian 15.18-0+deb12u1)"
    major: int


def find_binaries(search_path: Sequence[str] | None = None) -> PgBinaries:
    """The PostgreSQL server binaries: Debian's /usr/lib/postgresql/<major>/bin (newest first), then
    $PATH; or only the directories of `search_path`. Raises DependencyMissing naming the package."""
    if search_path is not None:
        dirs = list(search_path)
    else:
        dirs = sorted(glob.glob(_BIN_GLOB), key=_major_of_dir, reverse=True)
        dirs += os.environ.get("PATH", os.defpath).split(os.pathsep)
    for directory in dirs:
        postgres = find_executable("postgres", [directory])
        initdb = find_executable("initdb", [directory])
        if postgres and initdb:
            version = _version(postgres)
            major = int(version.split(".")[0])
            return PgBinaries(os.path.dirname(postgres), postgres, initdb, version, major)
    where = ", ".join(dirs) if search_path is not None else f"{_BIN_GLOB} and $PATH"
    raise DependencyMissing(
        f"PostgreSQL server binaries (postgres, initdb) not found in {where}; install the Debian "
        f"package {PACKAGE}: run {SETUP_COMMAND} (or apt-get install -y {PACKAGE})",
        PACKAGE,
    )


def dsn(port: int, database: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
    """A libpq URL for the server on 127.0.0.1:port (no TLS: it is a local test server)."""
    auth = quote(user, safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    return f"postgresql://{auth}@{LOCALHOST}:{port}/{quote(database, safe='')}?sslmode=disable"


def prepare(
    workdir: str,
    port: int,
    *,
    database: str = "postgres",
    user: str = "postgres",
    password: str | None = None,
    settings: Mapping[str, str] = _NO_SETTINGS,
    search_path: Sequence[str] | None = None,
    cache_dir: str = DEFAULT_CACHE_DIR,
) -> ServerPlan:
    """A fresh cluster in `<workdir>/postgres-<port>/data` and how to run it on 127.0.0.1:port.

    `user`/`password` are the database superuser. Without a password, TCP from 127.0.0.1 is `trust`;
    with one, the template is built with scram-sha-256 for TCP and the password is required.
    `database` is created in the template if it is not "postgres". `settings` become `-c k=v`.
    """
    for key in settings:
        if not _SETTING_NAME.match(key):
            raise ValueError(f"not a PostgreSQL setting name: {key!r}")
    check_port_free(port)
    bins = find_binaries(search_path)
    owner = server_owner(OS_USER, PACKAGE)
    template = template_cluster(bins, owner, user=user, database=database, password=password, cache_dir=cache_dir)

    base = Path(workdir) / f"postgres-{port}"
    Path(workdir).mkdir(parents=True, exist_ok=True)
    ensure_reachable(Path(workdir), base, owner)
    fresh_dir(base, owner)
    data = base / "data"
    # cp -a keeps the template's owner (the postgres user) and modes; ~0.03 s for the ~40 MB cluster.
    _run(["cp", "-a", "--", str(template), str(data)], "copy the template cluster")
    os.chmod(data, 0o700)  # PostgreSQL refuses a data dir readable by others

    argv = [bins.postgres, "-D", str(data), "-p", str(port)]
    sock = base / "run"
    if len(str(sock)) <= _MAX_SOCKET_DIR:
        fresh_dir(sock, owner)
        argv += ["-k", str(sock)]
    else:
        # A Unix socket path this long cannot be bound; clients of a test server use TCP anyway.
        argv += ["-c", "unix_socket_directories="]
    for key, value in (*_BASE_SETTINGS, *settings.items()):
        argv += ["-c", f"{key}={value}"]

    url = dsn(port, database, user, password)
    return ServerPlan(
        kind="postgres",
        argv=tuple(argv),
        env=frozen_env(),
        cwd=str(base),
        user=owner.user,
        group=owner.group,
        data_dir=str(data),
        # SIGINT = fast shutdown (rolls back clients, checkpoints); SIGTERM would wait for clients.
        stop_signal=signal.SIGINT,
        stop_grace=10.0,
        port=port,
        endpoint=url,
        prober=partial(_probe, url, str(data)),
    )


_TIME_TYPES = ("timestamp", "timestamptz", "date", "time", "timetz", "interval")


def state(endpoint: str, timeout: float = 10.0) -> dict[str, str]:
    """What a kept server's data is, to compare after a reset= with what a fresh start and its
    seed= made: every user table's row count and a digest of its rows, every sequence's position.

    Left out of the digest: columns of time types, and columns whose default calls a function
    other than a sequence's nextval (gen_random_uuid(), random(), now()::text): a reset that loads
    the seed's rows again gives them new values, which is not state leaking from one test to the
    next. Sequences are compared by position."""
    import psycopg
    from psycopg import sql

    out: dict[str, str] = {}
    with psycopg.connect(endpoint, autocommit=True, connect_timeout=max(1, int(timeout))) as conn:
        rels = conn.execute(
            "SELECT c.oid, n.nspname, c.relname, c.relkind FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 2, 3"
        ).fetchall()
        for oid, schema, name, kind in rels:
            ident = sql.Identifier(schema, name)
            if kind == "S":
                row = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(ident)).fetchone()
                assert row is not None
                out[f"sequence {schema}.{name}"] = f"at {row[0] if row[1] else 'its start'}"
                continue
            columns = [
                c
                for (c,) in conn.execute(
                    "SELECT a.attname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                    "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                    "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND NOT (t.typname = ANY(%s)) "
                    "AND NOT coalesce(pg_get_expr(d.adbin, d.adrelid) ~ '\\(' "
                    "AND pg_get_expr(d.adbin, d.adrelid) !~ '^nextval\\(', false) "
                    "ORDER BY a.attnum",
                    (oid, list(_TIME_TYPES)),
                ).fetchall()
            ]
            row_text: sql.Composable = sql.SQL("''")
            if columns:
                row_text = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(sql.Identifier(c) for c in columns))
            query = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(md5(r), '' ORDER BY md5(r)), '')) "
                "FROM (SELECT {} AS r FROM {}) rows"
            ).format(row_text, ident)
            counted = conn.execute(query).fetchone()
            assert counted is not None
            count, digest = counted
            out[f"table {schema}.{name}"] = f"{count} row{'' if count == 1 else 's'} (digest {digest[:12]})"
    return out


def template_cluster(
    bins: PgBinaries,
    owner: Owner,
    *,
    user: str = "postgres",
    database: str = "postgres",
    password: str | None = None,
    cache_dir: str = DEFAULT_CACHE_DIR,
) -> Path:
    """The cached template data directory for this configuration, built on first use."""
    config = {
        "layout": _TEMPLATE_LAYOUT,
        "version": bins.version,
        "postgres": bins.postgres,
        "uid": owner.uid,
        "user": user,
        "database": database,
        # A digest, not the password: the name of the cache directory is visible to everyone.
        "password": hashlib.sha256(password.encode()).hexdigest() if password is not None else None,
    }
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    final = Path(cache_dir) / f"faultbox-pg-template-{bins.major}-{digest}"
    if (final / "PG_VERSION").is_file():
        return final
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    ensure_reachable(Path(cache_dir), final, owner)  # initdb runs as the server's OS user
    with _locked(Path(cache_dir) / f".{final.name}.lock"):
        if (final / "PG_VERSION").is_file():  # another run built it while we waited
            return final
        for stale in glob.glob(f"{final}.tmp-*"):  # left by a build that crashed
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=cache_dir))
        try:
            os.chown(tmp, owner.uid, owner.gid)
            data = tmp / "data"
            _initdb(bins, owner, data, user=user, password=password, scratch=tmp)
            if database not in ("postgres", "template0", "template1"):
                _create_database(bins, owner, data, database)
            os.rename(data, final)  # atomic: a reader sees no template or a whole one
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _initdb(bins: PgBinaries, owner: Owner, data: Path, *, user: str, password: str | None, scratch: Path) -> None:
    argv = [bins.initdb, "-D", str(data), "-U", user, "-E", "UTF8", "--locale=C", "--no-instructions"]
    argv.append("--auth-local=trust")
    if password is None:
        argv.append("--auth-host=trust")
    else:
        pwfile = scratch / "pwfile"
        pwfile.write_text(password + "\n")
        os.chmod(pwfile, 0o600)
        os.chown(pwfile, owner.uid, owner.gid)
        argv += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
    _run(argv, "initdb the template cluster", owner)


def _create_database(bins: PgBinaries, owner: Owner, data: Path, database: str) -> None:
    # Single-user mode: no port, no socket, no race with anything else on the machine.
    ident = '"' + database.replace('"', '""') + '"'
    out = _run(
        [bins.postgres, "--single", "-D", str(data), "-c", "exit_on_error=on", "postgres"],
        f"create database {database!r} in the template",
        owner,
        stdin=f"CREATE DATABASE {ident};\n",
    )
    if "ERROR:" in out:
        raise DependencyError(f"could not create database {database!r} in the template: {out.strip()[-500:]}")


def _run(argv: list[str], what: str, owner: Owner | None = None, stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            cwd="/",  # the target user may not be able to enter our cwd
            user=owner.user if owner else None,
            group=owner.group if owner else None,
            extra_groups=[] if owner and owner.user else None,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise DependencyError(f"could not {what}: {exc}") from exc
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()[-800:]
        raise DependencyError(f"could not {what} (exit {proc.returncode}): {output}")
    return proc.stdout + proc.stderr


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@lru_cache(maxsize=8)
def _version(postgres: str) -> str:
    out = _run([postgres, "--version"], "read the PostgreSQL version")
    # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    match = re.search(r"\)\s+(\d+(?:\.\d+)?.*)$", out.strip())
    if not match:
        raise DependencyError(f"unexpected output of {postgres} --version: {out.strip()!r}")
    return match.group(1)


def _major_of_dir(path: str) -> int:
    match = re.search(r"/postgresql/(\d+)/bin$", path)
    return int(match.group(1)) if match else 0


def _probe(url: str, data_dir: str, timeout: float) -> None:
    """SELECT through the protocol, and check that the answer comes from *our* data directory: a
    stale server left on the port would otherwise pass."""
    import psycopg  # deferred: importing psycopg costs ~50 ms and most runs need no PostgreSQL

    try:
        with psycopg.connect(url, connect_timeout=max(1, math.ceil(timeout)), autocommit=True) as conn:
            row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    except psycopg.Error as exc:
        raise DependencyNotReady(f"postgres at {url}: {str(exc).strip()}") from exc
    if row is None or os.path.realpath(str(row[0])) != os.path.realpath(data_dir):
        raise DependencyNotReady(f"another PostgreSQL answers at {url} (data directory {row and row[0]})")
