"""Benchmark the fault proxy's pass-through cost: direct vs through the proxy, per protocol.

    .venv/bin/python bench/bench_proxy.py                       # ~1 min on 2 cores
    .venv/bin/python bench/bench_proxy.py --only tcp,redis --samples 2000
    .venv/bin/python bench/bench_proxy.py --tcp-relay            # every protocol through the plain TCP relay

For each protocol whose codec imports (`faultbox.proxy.hub.has_proxy`; the others are skipped with a
note saying why), against a real server:

* latency per round trip, on two connections open side by side, one direct and one through a
  pass-through proxy (a listener opened with `ProxyHub().open(Endpoint(...), emit)`, no rules
  installed), interleaved sample by sample with the order alternating, so machine noise hits both
  alike. Printed: p50/p99 of each and the added p50/p99 (proxy − direct), in µs.
    tcp       one 31-byte line echoed (an asyncio/uvloop line echo server in a child process)
    http      GET on a keep-alive HTTP/1.1 connection, raw socket client (uvloop server in the same
              child answering `200` with a 2-byte body)
    postgres  `SELECT 1` (simple query protocol) and `SELECT %s` with a parameter (extended protocol:
              Parse/Bind/Describe/Execute/Sync every time, psycopg's auto-prepare off), psycopg 3
    redis     GET of a 16-byte value, redis-py
    kafka     one produce with acks=1, flushed per message (confluent-kafka), --samples/10 of them
* throughput with --conns (16) connections, one client thread each, for tcp, http and redis: ops/s
  direct and through the proxy over ABBA-ordered windows of --seconds each, and their ratio.

Targets, printed next to the results with PASS/MISS (the exit status is always 0): added p50 ≤ 25 µs
for tcp and redis, ≤ 40 µs for http and postgres (kafka: none); throughput ≥ 50% of direct.

Set-up: the proxy hub runs in a child process of its own (as in a run, where it lives in the runner and
the clients are the system under test's), one per protocol; the clients run in this process. On 2 CPUs
the throughput windows share them among client, proxy and server. A round trip that gets no reply for
--stall seconds counts as hung: the proxy (or, for a direct one, the server) is killed so the client
call fails, and the protocol reports what it saw. After each protocol the proxy's own account is
printed: connections, bytes each way, close reasons, codec warnings (anything odd is flagged with !).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faultbox.deps import free_port  # noqa: E402
from faultbox.proxy.hub import CODECS, has_proxy  # noqa: E402

TIMEOUT = 10.0  # seconds a client waits on one socket operation
REFERENCE = "reference: 15–42 µs added"
LATENCY_TARGET_US = {"tcp": 25.0, "redis": 25.0, "http": 40.0, "postgres": 40.0}
THROUGHPUT_TARGET = 0.5
PROTOCOLS = ("tcp", "http", "postgres", "redis", "kafka")

QUIET = logging.getLogger("bench.rdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def _load_launcher() -> Any:
    spec = importlib.util.spec_from_file_location("deps_launcher", ROOT / "tests/integration/deps/depserver.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- clients: one connection each, trip() = one checked round trip -------------------------------------


class Client(Protocol):
    def trip(self) -> None: ...

    def close(self) -> None: ...


class BadReply(AssertionError):
    """The reply was not the one the request asks for."""


def _socket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("connection closed by the peer")
    return data


class LineClient:
    LINE = b"faultbox bench line 0123456789\n"

    def __init__(self, port: int) -> None:
        self.sock = _socket(port)

    def trip(self) -> None:
        self.sock.sendall(self.LINE)
        data = _recv(self.sock)
        while not data.endswith(b"\n"):
            data += _recv(self.sock)
        if data != self.LINE:
            raise BadReply(f"echo: sent {self.LINE!r}, got {data[:120]!r}")

    def close(self) -> None:
        self.sock.close()


HTTP_REQUEST = b"GET /bench?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: faultbox-bench\r\nAccept: */*\r\n\r\n"
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class HttpClient:
    """GET on one keep-alive connection; the reply is parsed (status, Content-Length, body)."""

    def __init__(self, port: int) -> None:
        self.sock = _socket(port)

    def trip(self) -> None:
        self.sock.sendall(HTTP_REQUEST)
        buf = _recv(self.sock)
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += _recv(self.sock)
        head = buf[:end].split(b"\r\n")
        if not head[0].startswith(b"HTTP/1.1 200 "):
            raise BadReply(f"http: status line {head[0][:120]!r}")
        length = -1
        for line in head[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length < 0:
            raise BadReply(f"http: no Content-Length in {buf[:end][:200]!r}")
        while len(buf) < end + 4 + length:
            buf += _recv(self.sock)
        if buf[end + 4 :] != b"ok":
            raise BadReply(f"http: body {buf[end + 4 :][:120]!r} (expected b'ok' and nothing after it)")

    def close(self) -> None:
        self.sock.close()


class PgClient:
    def __init__(self, dsn: str, port: int, *, extended: bool) -> None:
        import psycopg
        from psycopg.conninfo import make_conninfo

        self.conn = psycopg.connect(
            make_conninfo(dsn, host="127.0.0.1", port=port, connect_timeout=int(TIMEOUT)), autocommit=True
        )
        self.cur = self.conn.cursor()
        self.extended = extended
        self.n = 0

    def trip(self) -> None:
        if self.extended:
            self.n = (self.n + 1) % 100_000
            self.cur.execute("SELECT %s", (self.n,), prepare=False)
            want: tuple[int] = (self.n,)
        else:
            self.cur.execute("SELECT 1")
            want = (1,)
        row = self.cur.fetchone()
        if row != want:
            raise BadReply(f"postgres: expected {want!r}, got {row!r}")

    def close(self) -> None:
        self.conn.close()


REDIS_KEY = "bench:key"
REDIS_VALUE = b"0123456789abcdef"
REDIS_GET = f"*2\r\n$3\r\nGET\r\n${len(REDIS_KEY)}\r\n{REDIS_KEY}\r\n"  # how redis-py sends it


class RedisClient:
    def __init__(self, port: int) -> None:
        import redis

        self.r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
        self.r.ping()

    def trip(self) -> None:
        value = self.r.get(REDIS_KEY)
        if value != REDIS_VALUE:
            raise BadReply(f"redis: GET {REDIS_KEY} returned {value!r}")

    def close(self) -> None:
        self.r.close()


KAFKA_TOPIC = "bench-proxy"
KAFKA_VALUE = b"v" * 64


class KafkaClient:
    """A producer with acks=1; one trip = produce one message and flush until it is acknowledged."""

    def __init__(self, port: int) -> None:
        from confluent_kafka import Producer

        self.producer = Producer(
            {
                "bootstrap.servers": f"127.0.0.1:{port}",
                "acks": 1,
                "linger.ms": 0,
                "socket.nagle.disable": True,
                "message.timeout.ms": int(TIMEOUT * 1000),
            },
            logger=QUIET,
        )
        self.error: object = None
        self.delivered = 0
        self.trip()  # metadata, and the topic (auto-created) exists before timing starts

    def _done(self, err: object, msg: object) -> None:
        self.delivered += 1
        self.error = err

    def trip(self) -> None:
        before = self.delivered
        self.producer.produce(KAFKA_TOPIC, value=KAFKA_VALUE, on_delivery=self._done)
        left = self.producer.flush(TIMEOUT)
        if left or self.delivered != before + 1:
            raise TimeoutError(f"kafka: produce not acknowledged within {TIMEOUT:g} s")
        if self.error is not None:
            raise BadReply(f"kafka: produce failed: {self.error}")

    def close(self) -> None:
        self.producer.flush(1)


# -- the processes: upstream servers and the proxy host ------------------------------------------------


@dataclass
class Upstream:
    """The real server of one protocol."""

    port: int
    stop: Callable[[], object]
    kill: Callable[[], object]
    endpoint: str = ""


def _child(*args: str, stderr: Any = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )


def _first_line(proc: subprocess.Popen[bytes], what: str) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the child prints it once it accepts, or exits
    if not line:
        proc.wait(TIMEOUT)
        raise RuntimeError(f"{what} exited with status {proc.returncode} before it was ready")
    result: dict[str, Any] = json.loads(line)
    return result


def _end(proc: subprocess.Popen[bytes]) -> bytes:
    """Close the child's stdin (its signal to stop), return what else it printed."""
    try:
        out, _ = proc.communicate(timeout=TIMEOUT + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or b""


class LocalServers:
    """The line echo and HTTP servers, in one child process (uvloop), started on first use."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}

    def port(self, name: str) -> int:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = _child("servers")
            self.ports = _first_line(self.proc, "the echo/http server")
        return self.ports[name]

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def close(self) -> None:
        if self.proc is not None:
            _end(self.proc)
            self.proc = None


class ProxyHost:
    """A ProxyHub with one listener in front of 127.0.0.1:`target`, in a child process."""

    def __init__(self, codec: str, target: int, workdir: str) -> None:
        self.stderr_path = Path(workdir) / f"proxy-{codec}-{target}.stderr"
        with open(self.stderr_path, "wb") as err:
            self.proc = _child("proxy", codec, str(target), stderr=err)
        self.port = int(_first_line(self.proc, f"the {codec} proxy host")["port"])
        self.killed = False

    def kill(self) -> None:
        self.killed = True
        self.proc.kill()

    def close(self) -> dict[str, Any]:
        """Stop it; what the proxy saw (connections, bytes, close reasons, warnings, stderr)."""
        lines = _end(self.proc).strip().splitlines()
        stats: dict[str, Any] = {}
        if lines and not self.killed:
            with contextlib.suppress(ValueError):
                stats = json.loads(lines[-1])
        stats["returncode"] = self.proc.returncode
        stats["stderr"] = self.stderr_path.read_text(errors="replace").strip()
        return stats


@dataclass
class Env:
    """What a run shares across protocols."""

    workdir: str
    servers: LocalServers = field(default_factory=LocalServers)
    launcher: Any = None

    def server(self, plan: Any) -> Any:
        if self.launcher is None:
            self.launcher = _load_launcher().Server
        return self.launcher(plan).start()


def _start_local(name: str) -> Callable[[Env], Upstream]:
    def start(env: Env) -> Upstream:
        return Upstream(env.servers.port(name), stop=lambda: None, kill=env.servers.kill)

    return start


def _start_postgres(env: Env) -> Upstream:
    from faultbox.deps import postgres

    server = env.server(postgres.prepare(env.workdir, free_port()))
    return Upstream(server.plan.port, server.stop, server.kill, server.plan.endpoint)


def _start_redis(env: Env) -> Upstream:
    import redis as redis_py

    from faultbox.deps import redis

    server = env.server(redis.prepare(env.workdir, free_port(), appendonly=False))
    with redis_py.Redis(host="127.0.0.1", port=server.plan.port) as r:
        r.set(REDIS_KEY, REDIS_VALUE)
    return Upstream(server.plan.port, server.stop, server.kill, server.plan.endpoint)


def _start_kafka(env: Env) -> Upstream:
    from faultbox.deps import kafka

    server = env.server(kafka.prepare(env.workdir, free_port()))
    return Upstream(server.plan.port, server.stop, server.kill, server.plan.endpoint)


# -- what is measured ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One latency row: how to open a client on a port (of the server or of the proxy)."""

    label: str
    connect: Callable[[Upstream, int], Client]
    request: int  # bytes one request takes on the wire, at least (to tell a client that bypassed the proxy)
    scale: float = 1.0  # of --samples


@dataclass(frozen=True)
class Bench:
    name: str
    start: Callable[[Env], Upstream]
    rows: tuple[Row, ...]
    throughput: Row | None = None


BENCHES: dict[str, Bench] = {
    b.name: b
    for b in (
        Bench(
            "tcp",
            _start_local("echo"),
            (Row("line echo", lambda up, port: LineClient(port), len(LineClient.LINE)),),
            throughput=Row("line echo", lambda up, port: LineClient(port), len(LineClient.LINE)),
        ),
        Bench(
            "http",
            _start_local("http"),
            (Row("GET, keep-alive HTTP/1.1", lambda up, port: HttpClient(port), len(HTTP_REQUEST)),),
            throughput=Row("GET, keep-alive", lambda up, port: HttpClient(port), len(HTTP_REQUEST)),
        ),
        Bench(
            "postgres",
            _start_postgres,
            (
                # Query: 'Q' + length + "SELECT 1\0"; Parse + Bind + Describe + Execute + Sync: 5 headers and more
                Row("SELECT 1 (simple query)", lambda up, port: PgClient(up.endpoint, port, extended=False), 14),
                Row("SELECT %s (extended query)", lambda up, port: PgClient(up.endpoint, port, extended=True), 40),
            ),
        ),
        Bench(
            "redis",
            _start_redis,
            (Row("GET", lambda up, port: RedisClient(port), len(REDIS_GET)),),
            throughput=Row("GET", lambda up, port: RedisClient(port), len(REDIS_GET)),
        ),
        Bench(
            "kafka",
            _start_kafka,
            (Row("produce acks=1, flush each", lambda up, port: KafkaClient(port), len(KAFKA_VALUE), 0.1),),
        ),
    )
}


@dataclass
class Latency:
    label: str
    direct: list[float]  # µs per round trip
    proxied: list[float]

    def p(self, which: str, q: float) -> float:
        return percentile(self.direct if which == "direct" else self.proxied, q)

    def added(self, q: float) -> float:
        return self.p("proxied", q) - self.p("direct", q)


@dataclass
class Throughput:
    label: str
    conns: int
    direct_ops: int = 0
    direct_s: float = 0.0
    proxied_ops: int = 0
    proxied_s: float = 0.0

    @property
    def direct(self) -> float:
        return self.direct_ops / self.direct_s if self.direct_s else 0.0

    @property
    def proxied(self) -> float:
        return self.proxied_ops / self.proxied_s if self.proxied_s else 0.0

    @property
    def ratio(self) -> float:
        return self.proxied / self.direct if self.direct else 0.0


@dataclass
class Result:
    protocol: str
    codec: str
    latencies: list[Latency] = field(default_factory=list)
    throughput: Throughput | None = None
    skipped: str = ""
    error: str = ""
    proxy: dict[str, Any] = field(default_factory=dict)  # the proxy host's account
    trips: int = 0  # round trips made through the proxy
    wire: int = 0  # bytes those round trips sent to the proxy, at least


class Watchdog:
    """Turns a hang into an error: when a round trip has been waiting for `stall` seconds, kill what it
    waits on (the proxy host for a proxied one, the server for a direct one), so the call fails."""

    def __init__(self, stall: float, kill: Callable[[str], None]) -> None:
        self.stall = stall
        self.count = 0  # bumped by the measuring loop
        self.where = ""  # "proxy" / "direct" while a call is in flight, "" while idle
        self.fired = ""
        self._kill = kill
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = (-1, "")
        while not self._done.wait(self.stall):
            now = (self.count, self.where)
            if now == last and now[1]:
                self.fired = now[1]
                self._kill(now[1])
            last = now

    def close(self) -> None:
        self._done.set()
        self._thread.join()


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def interleave(
    direct: Client, proxied: Client, samples: int, warmup: int, wd: Watchdog
) -> tuple[list[float], list[float]]:
    """Round trips on both clients, alternating which goes first; µs each."""
    clock = time.perf_counter_ns
    d: list[int] = []
    p: list[int] = []
    for _ in range(warmup):
        wd.where = "direct"
        direct.trip()
        wd.where = "proxy"
        proxied.trip()
        wd.count += 1
    with _no_gc():
        order = (("direct", direct, d), ("proxy", proxied, p))
        for i in range(samples):
            for where, conn, out in order[::-1] if i & 1 else order:  # who goes first alternates
                wd.where = where
                t0 = clock()
                conn.trip()
                out.append(clock() - t0)
            wd.count += 1
    wd.where = ""
    return [x / 1000 for x in d], [x / 1000 for x in p]


def _window(connect: Callable[[], Client], conns: int, seconds: float, stall: float) -> tuple[int, float, int]:
    """`conns` client threads doing round trips for `seconds`; (ops, elapsed s, stuck threads)."""
    clients = [connect() for _ in range(conns)]
    ops = [0] * conns
    errors: list[BaseException] = []
    stop = threading.Event()
    go = threading.Barrier(conns + 1)

    def work(i: int) -> None:
        client = clients[i]
        go.wait()
        n = 0
        try:
            while not stop.is_set():
                client.trip()
                n += 1
        except BaseException as exc:
            errors.append(exc)
        ops[i] = n

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(conns)]
    for t in threads:
        t.start()
    with _no_gc():
        go.wait()
        t0 = time.perf_counter()
        stop.wait(seconds)  # the measuring window itself, not a synchronisation
        stop.set()
        elapsed = time.perf_counter() - t0
        deadline = time.monotonic() + stall
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    stuck = sum(t.is_alive() for t in threads)
    for c in clients:
        with contextlib.suppress(Exception):
            c.close()
    if errors and not stuck:
        raise errors[0]
    return sum(ops), elapsed, stuck


def measure_throughput(
    row: Row, up: Upstream, host: ProxyHost, conns: int, seconds: float, stall: float, rounds: int = 2
) -> Throughput:
    """Windows in ABBA order (direct, proxy, proxy, direct, ...) so a drift hits both alike."""
    result = Throughput(row.label, conns)
    for r in range(rounds):
        for proxied in (False, True) if r % 2 == 0 else (True, False):
            port = host.port if proxied else up.port
            ops, elapsed, stuck = _window(lambda port=port: row.connect(up, port), conns, seconds, stall)  # type: ignore[misc]
            if stuck:
                (host.kill if proxied else up.kill)()
                where = "through the proxy" if proxied else "direct"
                raise TimeoutError(f"{stuck} of {conns} connections ({where}) got no reply for {stall:g} s")
            if proxied:
                result.proxied_ops += ops
                result.proxied_s += elapsed
            else:
                result.direct_ops += ops
                result.direct_s += elapsed
    return result


def available(codec: str) -> bool:
    """has_proxy(), also when a half-written codec module raises something other than ImportError."""
    try:
        return has_proxy(codec)
    except Exception:
        return False


def _why_not(codec: str) -> str:
    module = CODECS.get(codec)
    if module is None:
        return f"no codec registered for {codec!r}"
    try:
        importlib.import_module(module)
    except Exception as exc:
        return f"{module} does not import ({type(exc).__name__}: {exc})"
    return f"{module} has no serve()"


def run_bench(
    bench: Bench,
    env: Env,
    *,
    samples: int,
    seconds: float,
    conns: int = 16,
    stall: float = 10.0,
    tcp_relay: bool = False,
    log: Callable[[str], None] = lambda s: None,
) -> Result:
    """Measure one protocol; never raises for what the proxy or the server does (see Result.error)."""
    codec = "tcp" if tcp_relay else bench.name
    result = Result(bench.name, codec)
    if not available(codec):
        result.skipped = _why_not(codec)
        return result
    try:
        up = bench.start(env)
    except Exception as exc:
        result.skipped = f"its server did not start: {type(exc).__name__}: {str(exc)[:300]}"
        return result
    host: ProxyHost | None = None
    wd: Watchdog | None = None
    try:
        host = ProxyHost(codec, up.port, env.workdir)
        proxy = host

        def kill(where: str) -> None:
            (proxy.kill if where == "proxy" else up.kill)()

        wd = Watchdog(stall, kill)
        for row in bench.rows:
            n = max(5, round(samples * row.scale))
            log(f"{bench.name}: {row.label}, {n} samples")
            wd.where = "direct"
            direct = row.connect(up, up.port)
            wd.where = "proxy"
            try:
                proxied = row.connect(up, host.port)
            except BaseException:
                direct.close()
                raise
            wd.where = ""
            try:
                warmup = min(200, max(5, n // 10))
                d, p = interleave(direct, proxied, n, warmup, wd)
                result.trips += n + warmup
                result.wire += (n + warmup) * row.request
            finally:
                wd.where = ""
                for c in (direct, proxied):
                    with contextlib.suppress(Exception):
                        c.close()
            result.latencies.append(Latency(row.label, d, p))
        if bench.throughput is not None and seconds > 0:
            log(f"{bench.name}: throughput, {conns} connections")
            t = result.throughput = measure_throughput(bench.throughput, up, host, conns, seconds, stall)
            result.trips += t.proxied_ops
            result.wire += t.proxied_ops * bench.throughput.request
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {str(exc)[:500]}"
        if wd is not None and wd.fired:
            side = "through the proxy" if wd.fired == "proxy" else "direct"
            killed = "the proxy host" if wd.fired == "proxy" else "the server"
            result.error = f"a round trip {side} got no reply for {stall:g} s ({killed} killed): {result.error}"
    finally:
        if wd is not None:
            wd.close()
        if host is not None:
            result.proxy = host.close()
        with contextlib.suppress(Exception):
            up.stop()
    return result


def measure(
    protocols: Sequence[str],
    *,
    samples: int,
    seconds: float,
    conns: int = 16,
    stall: float = 10.0,
    tcp_relay: bool = False,
    log: Callable[[str], None] = lambda s: None,
) -> list[Result]:
    workdir = tempfile.mkdtemp(prefix="fb-bench-", dir="/tmp")  # /tmp: the postgres user must reach it
    env = Env(workdir)
    try:
        return [
            run_bench(
                BENCHES[name],
                env,
                samples=samples,
                seconds=seconds,
                conns=conns,
                stall=stall,
                tcp_relay=tcp_relay,
                log=log,
            )
            for name in protocols
        ]
    finally:
        env.servers.close()
        shutil.rmtree(workdir, ignore_errors=True)


# -- report --------------------------------------------------------------------------------------------


def _proxy_notes(result: Result) -> list[str]:
    s = result.proxy
    if not s:
        return []
    notes = []
    if "conns" in s:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["reasons"].items()))
        line = (
            f"proxy's account: {s['conns']} connections, {s['bytes_c2s'] / 1024:.0f} KiB to the server, "
            f"{s['bytes_s2c'] / 1024:.0f} KiB back; closed: {reasons or 'none'}"
        )
        odd = set(s["reasons"]) - {"eof", "proxy_stopped"}
        notes.append(("! " if odd else "") + line)
        if s["bytes_c2s"] < result.wire:
            notes.append(
                f"! only {s['bytes_c2s']} bytes reached the proxy for {result.trips} round trips of at least "
                f"{result.wire} bytes: the client bypassed it"
            )
        notes += [f"! proxy warning: {w}" for w in s.get("warnings", [])]
    elif s.get("returncode"):
        notes.append(f"! the proxy host exited with status {s['returncode']}")
    if s.get("stderr"):
        tail = s["stderr"].splitlines()[-12:]
        notes.append("! proxy host stderr (last lines):")
        notes += [f"    {line}" for line in tail]
    return notes


def report(
    results: Sequence[Result],
    *,
    samples: int,
    seconds: float,
    conns: int,
    tcp_relay: bool,
    load: tuple[float, float] | None = None,
) -> None:
    w = print
    via = "the plain TCP relay (--tcp-relay)" if tcp_relay else "each protocol's codec"
    w(f"\nfaultbox proxy, pass-through (no rules, through {via}) vs direct; {os.cpu_count()} CPUs")
    if load is not None:
        busy = "  (other work on the machine: expect noise)" if load[0] >= 1.0 else ""
        w(f"1-minute load average: {load[0]:.2f} at the start, {load[1]:.2f} at the end{busy}")
    w(f"latency: {samples} samples per row (kafka {max(5, round(samples * 0.1))}), direct and proxy interleaved")
    w(f"throughput: {conns} connections, one client thread each, ABBA windows of {seconds:g} s\n")
    w(f"{'':<38} {'direct µs':>15} {'proxy µs':>15} {'added µs':>15}")
    w(f"{'latency per round trip':<38} {'p50    p99':>15} {'p50    p99':>15} {'p50    p99':>15}  target")
    w("-" * 108)
    for r in results:
        head = f"{r.protocol}" + (f" (via {r.codec} codec)" if r.codec != r.protocol else "")
        if r.skipped:
            w(f"{head}: SKIPPED, {r.skipped}")
            continue
        w(head)
        target = LATENCY_TARGET_US.get(r.protocol)
        for lat in r.latencies:
            cells = " ".join(
                f"{a:>7.1f}{b:>8.1f}"
                for a, b in (
                    (lat.p("direct", 0.5), lat.p("direct", 0.99)),
                    (lat.p("proxied", 0.5), lat.p("proxied", 0.99)),
                    (lat.added(0.5), lat.added(0.99)),
                )
            )
            if target is None:
                verdict = "p50 added: no target"
            else:
                verdict = f"p50 ≤ {target:.0f} µs  {'PASS' if lat.added(0.5) <= target else 'MISS'}"
            w(f"  {lat.label:<36}{cells}  {verdict}")
        t = r.throughput
        if t is not None:
            ok = "PASS" if t.ratio >= THROUGHPUT_TARGET else "MISS"
            w(
                f"  {'throughput, ' + t.label:<36}{t.direct:>10,.0f}/s {t.proxied:>13,.0f}/s {t.ratio:>14.0%}"
                f"   ≥ {THROUGHPUT_TARGET:.0%} of direct  {ok}"
            )
        if r.error:
            w(f"  ! ERROR: {r.error}")
        w(f"  {REFERENCE}")
        for note in _proxy_notes(r):
            w(f"  {note}")


# -- child processes -----------------------------------------------------------------------------------


def _serve_child() -> None:
    """The line echo and HTTP servers on free ports; prints {"echo": port, "http": port}; ends at stdin EOF."""
    import asyncio

    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data
            end = buf.rfind(b"\n") + 1
            if end:
                self.transport.write(buf[:end])
            self.buf = buf[end:]

    class Http(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data
            n = buf.count(b"\r\n\r\n")  # requests without a body: each head is one request
            if n:
                self.transport.write(HTTP_RESPONSE * n)
                buf = buf[buf.rfind(b"\r\n\r\n") + 4 :]
            self.buf = buf

    async def start() -> dict[str, int]:
        ports = {}
        for name, protocol in (("echo", Echo), ("http", Http)):
            sock = socket.create_server(("127.0.0.1", 0), backlog=512)
            await loop.create_server(protocol, sock=sock)
            ports[name] = sock.getsockname()[1]
        return ports

    ports = loop.run_until_complete(start())

    def stdin_readable() -> None:
        if not os.read(0, 4096):
            loop.stop()

    loop.add_reader(0, stdin_readable)
    print(json.dumps(ports), flush=True)
    loop.run_forever()


def _proxy_child(codec: str, target: int) -> None:
    """A ProxyHub with one listener in front of 127.0.0.1:target; prints {"port": p}; at stdin EOF
    closes it and prints what it saw."""
    from faultbox.proxy.hub import ProxyHub
    from faultbox.proxy.session import Endpoint

    reasons: Counter[str] = Counter()
    totals = {"conns": 0, "bytes_c2s": 0, "bytes_s2c": 0}

    def emit(type: str, fields: dict[str, str]) -> None:  # on the hub's loop thread only
        if type == "proxy_conn_open":
            totals["conns"] += 1
        elif type == "proxy_conn_close":
            reasons[fields.get("reason", "?")] += 1
            totals["bytes_c2s"] += int(fields.get("bytes_c2s", 0))
            totals["bytes_s2c"] += int(fields.get("bytes_s2c", 0))

    hub = ProxyHub()
    try:
        listener = hub.open(Endpoint("bench", "main", codec, "127.0.0.1", target), emit)
        print(json.dumps({"port": listener.port}), flush=True)
        sys.stdin.buffer.read()  # until the benchmark closes our stdin
        listener.close()
        stats = {**totals, "reasons": dict(reasons), "warnings": listener.warnings}
    finally:
        hub.close()
    print(json.dumps(stats), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["--child"]:
        if args_in[1] == "servers":
            _serve_child()
        else:
            _proxy_child(args_in[2], int(args_in[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=5000, help="round trips per latency row (kafka: a tenth)")
    parser.add_argument("--only", default=",".join(PROTOCOLS), help=f"comma-separated, of {','.join(PROTOCOLS)}")
    parser.add_argument("--seconds", type=float, default=1.5, help="throughput window (4 per protocol); 0: none")
    parser.add_argument("--conns", type=int, default=16, help="connections for throughput")
    parser.add_argument("--stall", type=float, default=10.0, help="seconds without a reply that count as a hang")
    parser.add_argument("--tcp-relay", action="store_true", help="every protocol through the plain TCP relay")
    args = parser.parse_args(args_in)
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in only if p not in BENCHES]
    if unknown:
        parser.error(f"unknown protocol(s) {', '.join(unknown)}; known: {', '.join(PROTOCOLS)}")

    started = time.monotonic()
    load_before = os.getloadavg()[0]
    results = measure(
        only,
        samples=args.samples,
        seconds=args.seconds,
        conns=args.conns,
        stall=args.stall,
        tcp_relay=args.tcp_relay,
        log=lambda s: print(f"  ... {s}", file=sys.stderr, flush=True),
    )
    load = (load_before, os.getloadavg()[0])
    report(results, samples=args.samples, seconds=args.seconds, conns=args.conns, tcp_relay=args.tcp_relay, load=load)
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
