"""Requests per second a mock serves on one core, against a minimal stdlib HTTP server answering the same bytes.

    .venv/bin/python bench/bench_mock.py                        # ~1 min on 2 cores
    .venv/bin/python bench/bench_mock.py --seconds 1 --windows 2 --conns 32

Two routes, each served by both servers with the same status, headers and JSON bytes:

    static   GET /v1/charges/ch_1   200, a fixed JSON body (what `json_response(body=...)` gives)
    dynamic  POST /v1/charges       201, a JSON body built per request with a counter (a `dynamic(fn)`
                                    handler, as the shop's payment provider has)

* the mock: `RemoteHub().open_mock(...)`, the real path of a run. The mock is served by the proxy
  worker (a process of its own); a dynamic answer is computed by the handler in this process, where a
  run's runner computes it (through `runner.mocks.MockHandlers`, as a run wraps a spec's handler), over
  the worker's socket. Every request leaves a `mock` event, read here as a run's runner reads it.
* the baseline: `http.server.ThreadingHTTPServer` with a `BaseHTTPRequestHandler` (HTTP/1.1
  keep-alive), in a child process.

Both servers, and this process (the mock's runner side), are pinned to one CPU; the load generator, a
child process with uvloop and raw sockets, to another. It keeps --conns (16) keep-alive connections
with one request outstanding each (no pipelining, like a real client), counts each response by its
Content-Length and checks it (status, body length, body start). Requests/s are measured over
--windows (4) windows of --seconds (3) per server and route, in ABBA order (mock, stdlib, stdlib,
mock, ...) so machine noise hits both alike, after one short warm-up window each; p50/p99 are per
request over every window. The CPU time of each side is read during the windows: a server CPU not
busy while the load generator's is means the client, not the server, was the limit (flagged with !).

Target, printed with PASS/MISS (the exit status is always 0): static ≥ 1.0× the stdlib server's rate.
The dynamic ratio is reported without a target.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faultbox.model.mock import (  # noqa: E402
    Dynamic,
    MockConfig,
    MockResponse,
    MockRoute,
    json_body,
    parse_route,
    with_header,
)

TARGET = 1.0  # static: mock req/s ≥ this × the stdlib server's
TIMEOUT = 10.0  # seconds to wait for a child to start, a check request, a window's drain
WARMUP = 0.5  # seconds of the uncounted warm-up window (at most --seconds)

SERVERS = ("mock", "stdlib")
SERVER_LABELS = {"mock": "mock (faultbox)", "stdlib": "stdlib ThreadingHTTPServer"}

STATIC_PATH = "/v1/charges/ch_1"
STATIC_VALUE = {"id": "ch_1", "object": "charge", "amount": 1000, "currency": "usd", "status": "succeeded"}
CHARGE_PATH = "/v1/charges"
CHARGE_REQUEST = {"order_id": "ord_1", "amount": 1000, "currency": "usd"}
JSON_HEADERS = with_header((), "content-type", "application/json")  # as json_response() sets it


def charge_value(n: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """The dynamic route's answer to the n-th charge. The id is zero-padded so every answer has the
    same length, which is how the load generator checks it."""
    return {
        "id": f"ch_{n:08d}",
        "object": "charge",
        "order_id": data["order_id"],
        "amount": data["amount"],
        "currency": data["currency"],
        "status": "succeeded",
    }


def _request(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: faultbox-bench\r\nAccept: */*\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


@dataclass(frozen=True)
class Route:
    name: str
    label: str
    request: bytes
    status: int
    length: int  # of the response body
    prefix: bytes  # the response body starts with it


ROUTES: dict[str, Route] = {
    r.name: r
    for r in (
        Route(
            "static",
            f"GET {STATIC_PATH}, static",
            _request("GET", STATIC_PATH),
            200,
            len(json_body(STATIC_VALUE)),
            b'{"id":"ch_1",',
        ),
        Route(
            "dynamic",
            f"POST {CHARGE_PATH}, dynamic",
            _request("POST", CHARGE_PATH, json_body(CHARGE_REQUEST)),
            201,
            len(json_body(charge_value(1, CHARGE_REQUEST))),
            b'{"id":"ch_',
        ),
    )
}


# -- CPUs and processes --------------------------------------------------------------------------------


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` on `cpus` (sched_setaffinity(pid) alone moves only its main thread)."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        tids = [pid]
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(tid, cpus)


def affinity(pid: int) -> set[int]:
    """The CPUs the threads of `pid` may run on (the union)."""
    found: set[int] = set()
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                found |= os.sched_getaffinity(int(tid))
    return found


def choose_cpus() -> tuple[int, int]:
    """(the servers' CPU, the load generator's CPU), from the CPUs this process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[1]) if len(allowed) > 1 else (allowed[0], allowed[0])


def _child(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def _read_line(proc: subprocess.Popen[bytes], what: str, timeout: float) -> dict[str, Any]:
    """The child's next JSON line; it writes one per request, so nothing waits in the buffer unseen."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        raise TimeoutError(f"{what} did not answer within {timeout:g} s (killed)")
    line = proc.stdout.readline()
    if not line:
        proc.wait(TIMEOUT)
        raise RuntimeError(f"{what} exited with status {proc.returncode}")
    result: dict[str, Any] = json.loads(line)
    return result


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Close the child's stdin (its signal to stop; a window in progress ends early), reading what it
    still writes so it never blocks on a full pipe; kill it if it does not end."""
    try:
        proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


# -- the servers ---------------------------------------------------------------------------------------


class Charges:
    """The dynamic route's handler, standing in for a spec's `def charge(req)`: reads the request's
    JSON, counts the charge, answers it as json_response(status=201, body=...) would."""

    def __init__(self) -> None:
        self.count = itertools.count(1)

    def __call__(self, req: Mapping[str, Any]) -> MockResponse:
        return MockResponse(201, json_body(charge_value(next(self.count), req["data"])), JSON_HEADERS)


def mock_config(charge: Callable[[Mapping[str, Any]], MockResponse]) -> MockConfig:
    """What `mock_service("payments", interface("main", "http", 0), routes = {...})` declares."""
    routes: dict[str, MockResponse | Dynamic] = {
        "GET /health": MockResponse(200, json_body({"status": "ok"}), JSON_HEADERS),
        f"GET {STATIC_PATH}": MockResponse(200, json_body(STATIC_VALUE), JSON_HEADERS),
        f"POST {CHARGE_PATH}": Dynamic(1, "charge", f"{__file__}:{Charges.__call__.__code__.co_firstlineno}", charge),
    }
    return MockConfig("http", tuple(MockRoute(parse_route(p), a) for p, a in routes.items()))


class MockHost:
    """The mock as a run serves it: in the proxy worker, its handler in this process."""

    def __init__(self, cpu: int) -> None:
        from faultbox.model.service import Service
        from faultbox.proxy.remote import RemoteHub
        from faultbox.proxy.session import Endpoint
        from faultbox.runner.mocks import MockHandlers

        self.events: Counter[str] = Counter()
        self.hub = RemoteHub()
        try:
            self.pid = self.hub.proc.pid
            pin(self.pid, {cpu})
            config = mock_config(Charges())
            handler = MockHandlers().for_service(Service("payments", (), mocks={"main": config}))
            endpoint = Endpoint("payments", "main", "http", "127.0.0.1", 0)
            self.mock = self.hub.open_mock(endpoint, config, self.emit, handler)
            pin(self.pid, {cpu})  # again: the threads it started since
        except BaseException:
            self.hub.close()
            raise
        self.port = self.mock.port

    def emit(self, type: str, fields: dict[str, str]) -> None:  # on the hub's reader thread
        self.events[type] += 1

    def sync(self) -> None:
        self.hub.sync()

    def close(self) -> None:
        try:
            self.mock.close()
        finally:
            self.hub.close()


class StdlibHost:
    """The baseline server, in a child process."""

    def __init__(self, cpu: int) -> None:
        self.proc = _child("stdlib", str(cpu))
        self.pid = self.proc.pid
        try:
            self.port = int(_read_line(self.proc, "the stdlib server", TIMEOUT)["port"])
            pin(self.pid, {cpu})
        except BaseException:
            _end(self.proc)
            raise

    def close(self) -> None:
        _end(self.proc)


class LoadGen:
    """The load generator child: one window per call."""

    def __init__(self, cpu: int) -> None:
        self.proc = _child("load", str(cpu))
        self.pid = self.proc.pid
        try:
            _read_line(self.proc, "the load generator", TIMEOUT)
            pin(self.pid, {cpu})
        except BaseException:
            _end(self.proc)
            raise

    def window(
        self, port: int, route: Route, *, conns: int, seconds: float, cpus: Sequence[int], pids: Mapping[str, int]
    ) -> dict[str, Any]:
        command = {
            "port": port,
            "request": route.request.decode("latin-1"),
            "status": route.status,
            "length": route.length,
            "prefix": route.prefix.decode("latin-1"),
            "conns": conns,
            "seconds": seconds,
            "cpus": list(cpus),
            "pids": dict(pids),
        }
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        self.proc.stdin.flush()
        return _read_line(self.proc, "the load generator", seconds + 3 * TIMEOUT)

    def close(self) -> None:
        _end(self.proc)


def fetch(port: int, request: bytes) -> bytes:
    """One request on a fresh connection; the whole response, read up to its Content-Length."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        buf = b""
        while (end := buf.find(b"\r\n\r\n")) < 0 or len(buf) < end + 4 + _content_length(buf[:end]):
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"closed after {len(buf)} bytes: {buf[:200]!r}")
            buf += data
        return buf


def _content_length(head: bytes) -> int:
    found = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
    if found is None:
        raise ValueError(f"no Content-Length in {head[:200]!r}")
    return int(found.group(1))


def same_bytes(mock_port: int, stdlib_port: int, route: Route) -> str:
    """Empty when both servers answer `route` with the same bytes (a dynamic answer's counter aside);
    else how the answers differ."""
    mock, stdlib = fetch(mock_port, route.request), fetch(stdlib_port, route.request)
    if route.name == "dynamic":
        mock, stdlib = (re.sub(rb'"ch_\d{8}"', b'"ch_N"', x) for x in (mock, stdlib))
    if mock == stdlib:
        return ""
    return f"the mock answered {mock[:300]!r}, the stdlib server {stdlib[:300]!r}"


# -- measurement ---------------------------------------------------------------------------------------


@dataclass
class Window:
    ops: int  # correct responses within the window
    elapsed: float
    latencies: list[int]  # ns per counted request
    answered: int  # every response, also those after the window closed
    errors: dict[str, int]
    first_error: str
    stuck: int  # connections without a reply at the end
    cpu_busy: dict[int, float]  # CPU -> busy fraction during the window
    proc_cpu: dict[str, float]  # watched process -> CPU seconds per second
    load_cpu: float  # the load generator's own CPU seconds per second

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Window:
        return cls(
            raw["ops"],
            raw["elapsed"],
            raw["latencies"],
            raw["answered"],
            raw["errors"],
            raw["first_error"],
            raw["stuck"],
            {int(k): v for k, v in raw["cpu_busy"].items()},
            raw["proc_cpu"],
            raw["load_cpu"],
        )

    @property
    def rate(self) -> float:
        return self.ops / self.elapsed if self.elapsed else 0.0


@dataclass
class Row:
    server: str
    route: str
    windows: list[Window] = field(default_factory=list)

    @property
    def ops(self) -> int:
        return sum(w.ops for w in self.windows)

    @property
    def rate(self) -> float:
        elapsed = sum(w.elapsed for w in self.windows)
        return self.ops / elapsed if elapsed else 0.0

    def latency_us(self, q: float) -> float:
        values = sorted(x for w in self.windows for x in w.latencies)
        if not values:
            return 0.0
        return values[min(len(values) - 1, round(q * (len(values) - 1)))] / 1000

    @property
    def errors(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for w in self.windows:
            total.update(w.errors)
            if w.stuck:
                total["no reply at the end of the window"] += w.stuck
        return total

    @property
    def first_error(self) -> str:
        return next((w.first_error for w in self.windows if w.first_error), "")

    def mean(self, get: Callable[[Window], float]) -> float:
        weights = [w.elapsed for w in self.windows]
        return sum(get(w) * e for w, e in zip(self.windows, weights, strict=True)) / sum(weights) if self.windows else 0


@dataclass
class Result:
    cpu_count: int
    allowed: list[int]
    server_cpu: int
    load_cpu: int
    conns: int
    seconds: float
    windows: int
    rows: dict[tuple[str, str], Row] = field(default_factory=dict)
    mismatch: dict[str, str] = field(default_factory=dict)  # route -> how the answers differ
    mock_events: int = 0
    mock_answered: int = 0  # responses the mock gave (windows, warm-ups, checks)
    pids: dict[str, int] = field(default_factory=dict)  # the processes started
    affinity: dict[str, list[int]] = field(default_factory=dict)  # their CPUs, as read back
    load: float = 0.0  # 1-minute load average before the servers started

    def row(self, server: str, route: str) -> Row:
        return self.rows[(server, route)]

    def ratio(self, route: str) -> float:
        base = self.row("stdlib", route).rate
        return self.row("mock", route).rate / base if base else 0.0


@contextlib.contextmanager
def _pinned(cpu: int) -> Iterator[None]:
    """This process (the mock's runner side) on the servers' CPU, restored on the way out."""
    before = os.sched_getaffinity(0)
    pin(os.getpid(), {cpu})
    try:
        yield
    finally:
        pin(os.getpid(), before)


def measure(
    *, seconds: float = 3.0, conns: int = 16, windows: int = 4, log: Callable[[str], None] = lambda s: None
) -> Result:
    """Both servers on both routes; every process started here is ended before it returns or raises."""
    server_cpu, load_cpu = choose_cpus()
    result = Result(os.cpu_count() or 0, sorted(os.sched_getaffinity(0)), server_cpu, load_cpu, conns, seconds, windows)
    result.load = os.getloadavg()[0]
    with _pinned(server_cpu), contextlib.ExitStack() as stack:
        log("starting the mock (proxy worker), the stdlib server and the load generator")
        mock = MockHost(server_cpu)
        stack.callback(mock.close)
        stdlib = StdlibHost(server_cpu)
        stack.callback(stdlib.close)
        gen = LoadGen(load_cpu)
        stack.callback(gen.close)
        result.pids = {"mock worker": mock.pid, "stdlib server": stdlib.pid, "load generator": gen.pid}
        result.affinity = {name: sorted(affinity(pid)) for name, pid in result.pids.items()}
        result.affinity["this process"] = sorted(affinity(os.getpid()))
        ports = {"mock": mock.port, "stdlib": stdlib.port}
        watch = {
            "mock": {"mock worker": mock.pid, "runner side": os.getpid()},
            "stdlib": {"stdlib server": stdlib.pid},
        }
        cpus = sorted({server_cpu, load_cpu})
        for route in ROUTES.values():
            if problem := same_bytes(mock.port, stdlib.port, route):
                result.mismatch[route.name] = problem
            result.mock_answered += 1
            for server in SERVERS:  # warm-up: connections, caches, the handler threads
                raw = gen.window(
                    ports[server], route, conns=conns, seconds=min(WARMUP, seconds), cpus=cpus, pids=watch[server]
                )
                result.mock_answered += raw["answered"] if server == "mock" else 0
            for server in SERVERS:
                result.rows[(server, route.name)] = Row(server, route.name)
            for i in range(windows):
                for server in SERVERS if i % 2 == 0 else SERVERS[::-1]:  # ABBA
                    log(f"{route.name}: {server}, window {i + 1}/{windows}")
                    raw = gen.window(ports[server], route, conns=conns, seconds=seconds, cpus=cpus, pids=watch[server])
                    result.rows[(server, route.name)].windows.append(Window.of(raw))
                    result.mock_answered += raw["answered"] if server == "mock" else 0
        mock.sync()
        result.mock_events = mock.events["mock"]
    return result


# -- report --------------------------------------------------------------------------------------------


def report(result: Result) -> None:
    w = print
    r = result
    w("\nfaultbox mock vs a minimal stdlib HTTP server, requests/s on one core")
    one = r.server_cpu == r.load_cpu
    w(
        f"CPUs: {r.cpu_count} on this machine, {len(r.allowed)} allowed here ({','.join(map(str, r.allowed))}); "
        f"servers on CPU {r.server_cpu}, load generator on CPU {r.load_cpu}"
        + ("  (! one CPU: client and servers share it)" if one else "")
    )
    for name, cpus in r.affinity.items():
        w(f"  {name:<16} CPU {','.join(map(str, cpus))}")
    # Only before: while it runs, the stdlib server's threads (one per connection) count in it.
    busy = "  (other work on the machine: expect noise)" if r.load >= 1.0 else ""
    w(f"1-minute load average at the start: {r.load:.2f}{busy}")
    w(
        f"load: {r.conns} keep-alive connections, one request outstanding each; {r.windows} windows of "
        f"{r.seconds:g} s per server and route, ABBA order\n"
    )
    w(f"{'':<30} {'req/s':>9} {'p50 µs':>9} {'p99 µs':>9} {'windows, req/s':>17}  {'CPU srv/load':>12}  errors")
    w("-" * 104)
    for route in ROUTES.values():
        w(route.label)
        for server in SERVERS:
            row = r.row(server, route.name)
            rates = [x.rate for x in row.windows]
            spread = f"{min(rates):,.0f}–{max(rates):,.0f}" if rates else "-"
            cpu = f"{row.mean(lambda x: x.cpu_busy.get(r.server_cpu, 0)):.0%}/{row.mean(lambda x: x.load_cpu):.0%}"
            errors = sum(row.errors.values())
            w(
                f"  {SERVER_LABELS[server]:<28} {row.rate:>9,.0f} {row.latency_us(0.5):>9.0f} "
                f"{row.latency_us(0.99):>9.0f} {spread:>17}  {cpu:>12}  {errors}{'  !' if errors else ''}"
            )
    w("")
    static, dynamic = r.ratio("static"), r.ratio("dynamic")
    w(f"static:  mock/stdlib {static:.2f}×   target ≥ {TARGET:.1f}× stdlib  {'PASS' if static >= TARGET else 'MISS'}")
    w(f"dynamic: mock/stdlib {dynamic:.2f}×   (no target)")
    for note in notes(r):
        w(note)


def notes(r: Result) -> list[str]:
    out = []
    for route in ROUTES.values():
        mock = r.row("mock", route.name)
        out.append(
            f"mock CPU, {route.name}: proxy worker {mock.mean(lambda x: x.proc_cpu.get('mock worker', 0)):.0%}, "
            f"runner side (this process: events, handlers) {mock.mean(lambda x: x.proc_cpu.get('runner side', 0)):.0%}"
            " of a core"
        )
    mock_events = f"mock's account: {r.mock_events} `mock` events for {r.mock_answered} responses"
    out.append(("! " if r.mock_events < r.mock_answered else "") + mock_events)
    for name, problem in r.mismatch.items():
        out.append(f"! {name}: the servers' answers differ: {problem}")
    for row in r.rows.values():
        label = f"{row.server}, {row.route}"
        if row.errors:
            listed = ", ".join(f"{k} {v}" for k, v in row.errors.most_common())
            out.append(f"! {label}: errors: {listed}" + (f"; first: {row.first_error}" if row.first_error else ""))
        server_busy = row.mean(lambda x: x.cpu_busy.get(r.server_cpu, 0))
        if r.server_cpu != r.load_cpu and row.mean(lambda x: x.load_cpu) >= 0.95 and server_busy < 0.9:
            out.append(
                f"! {label}: the load generator's CPU was saturated while the server's was {server_busy:.0%} busy: "
                "the rate is the client's limit"
            )
    return out


# -- child processes -----------------------------------------------------------------------------------


def _stdlib_child(cpu: int) -> None:
    """The baseline server on a free port; prints {"port": p}; ends at stdin EOF."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    os.sched_setaffinity(0, {cpu})
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the benchmark's: it closes our stdin

    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    static = dumps(STATIC_VALUE)
    charges = itertools.count(1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive
        # One send per response, without Nagle's delay. With the defaults the head and the body leave in
        # two writes and the body waits for the client's delayed ACK: ~44 ms per request here.
        wbufsize = -1
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            if self.path == STATIC_PATH:
                self.answer(200, static)
            else:
                self.answer(404, dumps({"error": "not found"}))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            data = json.loads(self.rfile.read(length)) if length else None
            if self.path == CHARGE_PATH and isinstance(data, dict):
                self.answer(201, dumps(charge_value(next(charges), data)))
            else:
                self.answer(404, dumps({"error": "not found"}))

        def answer(self, status: int, body: bytes) -> None:
            self.send_response_only(status)  # send_response() would add Server and Date: not the same bytes
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a line on stderr per request is not what is measured

    class Server(ThreadingHTTPServer):
        request_queue_size = 128  # --conns connect at once; the default backlog (5) would drop SYNs

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    sys.stdin.buffer.read()  # until the benchmark closes our stdin
    server.shutdown()
    server.server_close()


def _cpu_ticks(cpus: Sequence[int]) -> dict[int, tuple[int, int]]:
    """CPU -> (busy, total) clock ticks since boot, from /proc/stat."""
    out: dict[int, tuple[int, int]] = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
                total = sum(ticks)
                out[int(name[3:])] = (total - ticks[3] - ticks[4] - ticks[7], total)
    return out


def _proc_ticks(pid: int) -> int:
    """utime + stime of every thread of `pid`, in clock ticks (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])


def _load_child(cpu: int) -> None:
    """Runs windows for the benchmark: a JSON command per stdin line, a JSON result per stdout line."""
    import asyncio
    import gc

    os.sched_setaffinity(0, {cpu})
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the benchmark's: it closes our stdin
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    clock = time.perf_counter_ns
    hz = os.sysconf("SC_CLK_TCK")

    class State:
        def __init__(self, cmd: Mapping[str, Any]) -> None:
            self.request: bytes = cmd["request"].encode("latin-1")
            self.status = str(cmd["status"]).encode()
            self.length: int = cmd["length"]
            self.prefix: bytes = cmd["prefix"].encode("latin-1")
            self.stop = False
            self.ops = 0
            self.answered = 0
            self.latencies: list[int] = []
            self.errors: Counter[str] = Counter()
            self.first_error = ""

        def error(self, kind: str, detail: str) -> None:
            self.errors[kind] += 1
            if not self.first_error:
                self.first_error = f"{kind}: {detail}"[:300]

    class Client(asyncio.Protocol):
        """One keep-alive connection with one request outstanding at a time."""

        def __init__(self, state: State) -> None:
            self.state = state
            self.transport: asyncio.Transport | None = None
            self.buf = b""
            self.need = -1  # bytes of the whole response, once its head is read
            self.body_at = 0
            self.sent = 0
            self.idle = loop.create_future()  # done once it stopped with no request in flight

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def send(self) -> None:
            assert self.transport is not None
            self.sent = clock()
            self.transport.write(self.state.request)

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data if self.buf else data
            state = self.state
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    self.buf = buf
                    return
                head = buf[:end].lower()
                at = head.find(b"\r\ncontent-length:")
                if at < 0:
                    self.fail("no content-length", repr(buf[:200]))
                    return
                stop = head.find(b"\r\n", at + 2)
                self.need = end + 4 + int(head[at + 17 : stop if stop >= 0 else end])
                self.body_at = end + 4
            if len(buf) < self.need:
                self.buf = buf
                return
            now = clock()
            body = buf[self.body_at : self.need]
            extra = len(buf) - self.need
            status = buf[9:12]
            self.buf, self.need = b"", -1
            state.answered += 1
            if status != state.status:
                state.error(f"status {status.decode('latin-1')}", repr(buf[:200]))
            elif len(body) != state.length or not body.startswith(state.prefix):
                state.error("wrong body", f"{len(body)} bytes: {body[:200]!r}")
            elif extra:
                state.error("bytes after the response", repr(buf[self.need :][:200]))
            elif not state.stop:
                state.ops += 1
                state.latencies.append(now - self.sent)
            if state.stop:
                self.done()
            else:
                self.send()

        def fail(self, kind: str, detail: str) -> None:
            self.state.error(kind, detail)
            if self.transport is not None:
                self.transport.abort()
            self.done()

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.idle.done():
                self.state.error("connection closed", str(exc or "by the server"))
                self.done()

        def done(self) -> None:
            if not self.idle.done():
                self.idle.set_result(None)

    async def window(cmd: Mapping[str, Any]) -> dict[str, Any]:
        state = State(cmd)
        clients: list[Client] = []
        try:
            for _ in range(cmd["conns"]):
                _, client = await loop.create_connection(lambda: Client(state), "127.0.0.1", cmd["port"])
                clients.append(client)
        except OSError as exc:
            state.error("connect", str(exc))
            for c in clients:
                c.done()
        cpus, pids = cmd["cpus"], cmd["pids"]
        gc.collect()
        gc.disable()
        cpu0, procs0 = _cpu_ticks(cpus), {name: _proc_ticks(pid) for name, pid in pids.items()}
        own0, t0 = time.process_time(), time.perf_counter()
        for c in clients:
            c.send()
        gone = loop.create_future()

        def stdin_readable() -> None:
            if not os.read(0, 4096):  # EOF: the benchmark is ending (or gone), stop now
                loop.remove_reader(0)
                if not gone.done():
                    gone.set_result(None)

        loop.add_reader(0, stdin_readable)
        try:
            await asyncio.wait([gone], timeout=cmd["seconds"])
        finally:
            loop.remove_reader(0)
            os.set_blocking(0, True)  # the loop made it non-blocking; the next command is read blocking
        state.stop = True
        elapsed, own = time.perf_counter() - t0, time.process_time() - own0
        cpu1, procs1 = _cpu_ticks(cpus), {name: _proc_ticks(pid) for name, pid in pids.items()}
        # The requests in flight are answered before the connections close (uncounted), so that no
        # server sees a reset mid-answer.
        _, stuck = await asyncio.wait([c.idle for c in clients], timeout=TIMEOUT) if clients else (set(), set())
        gc.enable()
        for c in clients:
            if c.transport is not None:
                c.transport.close()
        await asyncio.sleep(0)
        busy = {}
        for n, (b1, t1) in cpu1.items():
            b0, t0_ = cpu0[n]
            busy[n] = (b1 - b0) / (t1 - t0_) if t1 > t0_ else 0.0
        return {
            "ops": state.ops,
            "elapsed": elapsed,
            "latencies": state.latencies,
            "answered": state.answered,
            "errors": dict(state.errors),
            "first_error": state.first_error,
            "stuck": len(stuck),
            "cpu_busy": busy,
            "proc_cpu": {name: (procs1[name] - procs0[name]) / hz / elapsed for name in pids},
            "load_cpu": own / elapsed,
        }

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        out = loop.run_until_complete(window(json.loads(line)))
        print(json.dumps(out), flush=True)
    loop.close()


def main(argv: Sequence[str] | None = None) -> None:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["--child"]:
        (_stdlib_child if args_in[1] == "stdlib" else _load_child)(int(args_in[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one measuring window")
    parser.add_argument("--conns", type=int, default=16, help="keep-alive connections of the load generator")
    parser.add_argument("--windows", type=int, default=4, help="windows per server and route (ABBA order)")
    args = parser.parse_args(args_in)
    if args.seconds <= 0 or args.conns < 1 or args.windows < 1:
        parser.error("--seconds must be > 0, --conns and --windows ≥ 1")
    started = time.monotonic()
    result = measure(
        seconds=args.seconds,
        conns=args.conns,
        windows=args.windows,
        log=lambda s: print(f"  ... {s}", file=sys.stderr, flush=True),
    )
    report(result)
    print(f"\n({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
