"""Benchmark the real data servers and the wal/topic event sources.

    python bench/bench_deps.py [--starts 5] [--samples 200]

Prints, measured against target:
* start-to-ready per server (median over --starts): PostgreSQL from the template (copy + start +
  first successful SELECT), Redis and the Tansu broker (spawn to first successful PING / metadata);
* COMMIT -> `wal` event and produce -> `topic` event latency (p50/p95 over --samples), each timed
  from the moment the client issues the COMMIT / produce until the source calls emit();
* an idle barrier() of each source;
* a topic source's start on a broker just started (what each test that starts its broker waits for).

Servers are launched with the test suite's launcher (tests/integration/deps/conftest.py), the way the
runner launches them: plan.argv as plan.user in a new process group, stopped by the plan's signal.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import psycopg  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

from faultbox.deps import ServerPlan, free_port, kafka, postgres, redis  # noqa: E402
from faultbox.sources.topic import TopicSource  # noqa: E402
from faultbox.sources.wal import WalSource  # noqa: E402


def _load_launcher() -> Any:
    spec = importlib.util.spec_from_file_location("deps_launcher", ROOT / "tests/integration/deps/depserver.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


Server = _load_launcher().Server


QUIET = logging.getLogger("bench.rdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_starts(name: str, make: Callable[[str, int], ServerPlan], starts: int) -> tuple[float, float]:
    """Median (prepare seconds, spawn-to-ready seconds)."""
    prepares, readies = [], []
    for _ in range(starts):
        workdir = tempfile.mkdtemp(prefix="fb-bench-", dir="/tmp")
        try:
            t0 = time.perf_counter()
            plan = make(workdir, free_port())
            prepares.append(time.perf_counter() - t0)
            server = Server(plan).start()
            readies.append(server.ready_seconds)
            server.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return statistics.median(prepares), statistics.median(readies)


class Stamps:
    """emit() callback that time-stamps events by a key field and wakes the waiter."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.at: dict[str, float] = {}
        self.cond = threading.Condition()

    def __call__(self, type: str, service: str, fields: dict[str, str], data: object) -> None:
        now = time.perf_counter()
        if fields.get("action") in ("INSERT", "produce") and self.key in fields:
            with self.cond:
                self.at.setdefault(fields[self.key], now)
                self.cond.notify_all()

    def wait_for(self, key: str, timeout: float = 5.0) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: key in self.at, timeout):
                raise TimeoutError(f"no event for {key}")
            return self.at[key]


def bench_wal(samples: int) -> tuple[list[float], list[float]]:
    workdir = tempfile.mkdtemp(prefix="fb-bench-", dir="/tmp")
    server = Server(postgres.prepare(workdir, free_port())).start()
    stamps = Stamps("id")
    source = WalSource(server.plan.endpoint, "db", stamps)
    try:
        with psycopg.connect(server.plan.endpoint, autocommit=True) as conn:
            conn.execute("CREATE TABLE bench (id int PRIMARY KEY, v text)")
            source.start()
            latencies = []
            for i in range(samples):
                t0 = time.perf_counter()
                conn.execute("INSERT INTO bench VALUES (%s, 'x')", (i,))  # autocommit: this is the COMMIT
                latencies.append(stamps.wait_for(str(i)) - t0)
            barriers = []
            for _ in range(50):
                t0 = time.perf_counter()
                source.barrier(5)
                barriers.append(time.perf_counter() - t0)
        return latencies, barriers
    finally:
        source.stop()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def bench_topic(samples: int) -> tuple[list[float], list[float]]:
    workdir = tempfile.mkdtemp(prefix="fb-bench-", dir="/tmp")
    server = Server(kafka.prepare(workdir, free_port())).start()
    stamps = Stamps("value")
    source = TopicSource(server.plan.endpoint, "bus", stamps)
    try:
        producer = Producer({"bootstrap.servers": server.plan.endpoint, "linger.ms": 0}, logger=QUIET)
        producer.produce("bench", value=b"warmup")  # creates the topic before the source follows it
        producer.flush(10)
        source.start()
        latencies = []
        for i in range(samples):
            t0 = time.perf_counter()
            producer.produce("bench", key=str(i % 8).encode(), value=str(i).encode())
            producer.poll(0)
            latencies.append(stamps.wait_for(str(i)) - t0)
        producer.flush(10)
        barriers = []
        for _ in range(50):
            t0 = time.perf_counter()
            source.barrier(5)
            barriers.append(time.perf_counter() - t0)
        return latencies, barriers
    finally:
        source.stop()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def time_topic_attach(starts: int) -> float:
    """Median seconds for a topic source to start following a broker just started, as in each test
    that starts its broker (the reader process kept from the source before, as in a run)."""
    times = []
    for i in range(max(starts, 1) + 1):
        workdir = tempfile.mkdtemp(prefix="fb-bench-", dir="/tmp")
        try:
            server = Server(kafka.prepare(workdir, free_port())).start()
            source = TopicSource(server.plan.endpoint, "bus", lambda *a: None)
            try:
                t0 = time.perf_counter()
                source.start()
                if i:  # the first one started the reader process
                    times.append(time.perf_counter() - t0)
            finally:
                source.stop()
                server.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()

    # Build the PostgreSQL template (once per machine) and import the clients before timing.
    warm = tempfile.mkdtemp(prefix="fb-bench-", dir="/tmp")
    for module in (postgres, redis, kafka):
        Server(module.prepare(warm, free_port())).start().stop()
    shutil.rmtree(warm, ignore_errors=True)

    rows: list[tuple[str, float, float, str]] = []  # (metric, measured s, target s, how)
    pg_prepare, pg_ready = time_starts("postgres", postgres.prepare, args.starts)
    rows.append(("postgres: copy template + start to SELECT", pg_prepare + pg_ready, 1.0, "median"))
    rows.append(("  of which copying the template (prepare)", pg_prepare, 1.0, "median"))
    rows.append(("redis: spawn to PING", time_starts("redis", redis.prepare, args.starts)[1], 0.2, "median"))
    rows.append(("tansu: spawn to metadata", time_starts("kafka", kafka.prepare, args.starts)[1], 0.2, "median"))

    rows.append(("topic source: start on a new broker", time_topic_attach(args.starts * 2), 0.05, "median"))

    wal, wal_barrier = bench_wal(args.samples)
    rows.append(("COMMIT -> wal event", percentile(wal, 0.5), 0.05, "p50"))
    rows.append(("COMMIT -> wal event", percentile(wal, 0.95), 0.05, "p95"))
    rows.append(("wal barrier, idle", percentile(wal_barrier, 0.5), 0.01, "p50"))
    topic, topic_barrier = bench_topic(args.samples)
    rows.append(("produce -> topic event", percentile(topic, 0.5), 0.05, "p50"))
    rows.append(("produce -> topic event", percentile(topic, 0.95), 0.05, "p95"))
    rows.append(("topic barrier, idle", percentile(topic_barrier, 0.5), 0.05, "p50"))

    print(f"\n{'metric':<44} {'stat':<6} {'measured':>10} {'target':>10}  ok")
    print("-" * 78)
    for metric, measured, target, how in rows:
        ok = "yes" if measured <= target else "NO"
        print(f"{metric:<44} {how:<6} {measured * 1000:>8.2f}ms {target * 1000:>8.0f}ms  {ok}")
    print(f"\n({args.starts} starts per server, {args.samples} latency samples per source)")


if __name__ == "__main__":
    main()
