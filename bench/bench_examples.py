"""How fast suites run: the shop suite serially and with --jobs 2, the speedup on a suite of
CPU-light tests, the per-test overhead beyond each test's own body, and sharding.

    .venv/bin/python bench/bench_examples.py               # ~8 min on 2 cores (the shop five times)
    .venv/bin/python bench/bench_examples.py --no-shop     # the CPU-light suite and shards only, ~90 s

Every figure comes from this one run, side by side:

* shop: `examples/shop/shop.star` (PostgreSQL and Redis kept between tests, the broker, the apps
  and a mock started for each) with --jobs 1, --jobs 2 and --jobs 4, and --jobs 2 with
  --concurrent-start (services start as their depends_on allow); wall times and their ratios (its
  tests mostly wait, so more workers than cores still help), the mean time to start a test's
  services, and the CPU time each run took (the runner, its workers and every service they
  started): that CPU time over the machine's cores is the least wall time any number of workers
  can reach. Then --jobs 2 on the 26 tests the suite had when the target was set. Before and after,
  the CPU time this machine takes to import the apps' clients (psycopg, redis-py, confluent-kafka),
  the largest part of a test's start: on a shared VM it moves by half or more within an hour.
* light: a generated suite of --tests (16) tests, each starting one small TCP service and waiting
  --wait (1.5 s) in its body: what a suite of tests that mostly wait gains from workers.
* overhead: per test, its wall time minus its body's (starting and stopping services, the barrier,
  the judge), averaged over the light suite, serially and with workers; and the time from a
  worker's start to its first test.
* shards: the light suite as N shards (N = 2, 3, 4): each shard's size against ⌈tests/N⌉, and the
  merged result against the unsharded one, test for test (name, outcome, seed).

Targets, printed with PASS/MISS (the exit status is 0 unless a suite itself failed): the shop at
--jobs 2 in ≤ 45 s, marked both on the suite it was set on (26 of today's 33 tests, TARGET_SUITE)
and on the whole suite (its better of --jobs 2 and --jobs 2 --concurrent-start); light ≥ 1.8× at
--jobs 2; every shard ≤ ⌈tests/N⌉; merged == unsharded.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from faultbox.model.result import RunResult
from faultbox.report.merge import merge_runs
from faultbox.runner.run import RunOptions, run_spec
from faultbox.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "examples" / "shop" / "shop.star"

# The shop's suite when the target was set: "the shop's 26 tests take about 155 s on 2 cores", said
# the issue that set it (the suite of commit ffdbcff). The seven tests added since (the payment
# provider's scenarios, protocol faults) are measured with the whole suite, whose mark is printed
# beside this one. Every test here still exists.
TARGET_SUITE = [
    "bad_request_is_rejected",
    "bulk_import",
    "create_order",
    "health_check",
    "matrix_bulk_import_db_down",
    "matrix_bulk_import_db_slow",
    "matrix_bulk_import_disk_full",
    "matrix_create_order_db_down",
    "matrix_create_order_db_slow",
    "matrix_create_order_disk_full",
    "matrix_health_check_db_down",
    "matrix_health_check_db_slow",
    "matrix_health_check_disk_full",
    "no_duplicate_events",
    "no_message_loss",
    "no_orphan_events",
    "no_orphaned_orders",
    "no_rows_after_failed_write",
    "no_stale_cache",
    "no_stale_cache_db_down",
    "no_stale_cache_db_write_error",
    "order_db_down",
    "order_db_write_fail",
    "order_is_stored_cached_and_reserved",
    "publish_and_consume",
    "wal_before_response",
]
TARGET_PATTERN = "~^test_(" + "|".join(TARGET_SUITE) + ")$"


def _light_suite(directory: Path, tests: int, wait: float) -> Path:
    server = directory / "server.py"
    server.write_text(
        "import socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('127.0.0.1', 19555)); s.listen()\n"
        "while True:\n"
        "    c, _ = s.accept(); c.recv(64); c.sendall(b'ok\\n'); c.close()\n"
    )
    spec = directory / "light.star"
    head = (
        f'svc = service("svc", "{sys.executable}", interface("main", "tcp", 19555), args = ["{server}"],\n'
        '    healthcheck = tcp("127.0.0.1:19555"))\n'
    )
    body = "".join(
        f'\ndef test_light_{i:02d}():\n    assert_eq(svc.main.send(data = "x").strip(), "ok")\n    sleep("{wait}s")\n'
        for i in range(tests)
    )
    spec.write_text(head + body)
    return spec


def _cpu() -> float:
    """CPU seconds of this process and of every process it has reaped (workers, and through them
    the services they reaped)."""
    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


def _run(path: Path, jobs: int, **extra: object) -> tuple[RunResult, float, float]:
    """The run's result, its wall time and its CPU time, in seconds."""
    spec = load_spec(str(path))
    began, cpu = time.monotonic(), _cpu()
    result = run_spec(spec, RunOptions(seed=1, jobs=jobs, **extra))  # type: ignore[arg-type]
    return result, time.monotonic() - began, _cpu() - cpu


def _cpu_line(runs: list[tuple[str, float]]) -> str:
    cores = os.cpu_count() or 1
    parts = [f"{label} {cpu:5.1f}s" for label, cpu in runs]
    floor = min(cpu for _, cpu in runs) / cores
    return f"        CPU time: {'   '.join(parts)}   (over {cores} cores: no run below {floor:4.1f}s)"


def _overhead_ms(result: RunResult) -> float:
    per = [t.duration_ms - t.timings.get("body_ms", 0) for t in result.tests]
    return sum(per) / len(per) if per else 0.0


def _start_ms(result: RunResult) -> float:
    per = [t.timings.get("start_ms", 0) for t in result.tests]
    return sum(per) / len(per) if per else 0.0


def _mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _summary(result: RunResult) -> list[tuple[str, str, int]]:
    return [(t.name, t.outcome.value, t.seed) for t in result.tests]


def _machine_speed() -> float:
    """CPU seconds this machine takes, now, to import the shop apps' clients (median of three): the
    largest part of a shop test's start. A shared VM's figure moves by half or more from one hour to
    the next; printed at the start and end of a run, it says how fast the machine was meanwhile."""
    python = SHOP.parent / ".venv" / "bin" / "python"
    times = []
    for _ in range(3):
        before = _cpu()
        subprocess.run([str(python), "-c", "import psycopg, redis, confluent_kafka"], check=True)
        times.append(_cpu() - before)
    return sorted(times)[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-shop", action="store_true", help="skip the shop suite")
    parser.add_argument("--tests", type=int, default=16)
    parser.add_argument("--wait", type=float, default=1.5)
    args = parser.parse_args()
    status = 0

    if not args.no_shop and SHOP.exists():
        speed = _machine_speed()
        serial, serial_s, serial_cpu = _run(SHOP, 1)
        parallel, parallel_s, parallel_cpu = _run(SHOP, 2)
        wide, wide_s, wide_cpu = _run(SHOP, 4)
        eager, eager_s, eager_cpu = _run(SHOP, 2, concurrent_start=True)
        target, target_s, _ = _run(SHOP, 2, test=TARGET_PATTERN)
        print(f"shop    {len(serial.tests)} tests   --jobs 1 {serial_s:6.1f}s   --jobs 2 {parallel_s:6.1f}s   ", end="")
        print(f"speedup {serial_s / parallel_s:4.2f}x   --jobs 4 {wide_s:6.1f}s ({serial_s / wide_s:4.2f}x)")
        print(
            f"        --jobs 2 --concurrent-start {eager_s:6.1f}s ({serial_s / eager_s:4.2f}x)   "
            f"start per test: {_start_ms(parallel):5.0f} ms, concurrent {_start_ms(eager):5.0f} ms"
        )
        print(
            f"        target --jobs 2 <= 45s: on the {len(target.tests)} tests it was set on {target_s:6.1f}s "
            f"{_mark(target_s <= 45 and len(target.tests) == len(TARGET_SUITE))}   "
            f"on all {len(parallel.tests)} {min(parallel_s, eager_s):6.1f}s {_mark(min(parallel_s, eager_s) <= 45)}"
        )
        cpu = [("--jobs 1", serial_cpu), ("--jobs 2", parallel_cpu), ("--jobs 4", wide_cpu), ("concurrent", eager_cpu)]
        print(_cpu_line(cpu))
        after = _machine_speed()
        print(f"        machine: importing the apps' clients took {speed:4.2f}s of CPU before, {after:4.2f}s after")
        for label, other in (("2", parallel), ("4", wide), ("2 --concurrent-start", eager)):
            if _summary(serial) != _summary(other):
                print(f"  results differ between --jobs 1 and --jobs {label}:")
                for a, b in zip(_summary(serial), _summary(other), strict=False):
                    if a != b:
                        print(f"    {a}  vs  {b}")
        for r in (serial, parallel, wide, eager, target):
            if r.exit_code != 0:
                status = 1
                print(f"  (not all tests passed: {r.counts()})")

    with tempfile.TemporaryDirectory(prefix="bench-examples-") as tmp:
        light = _light_suite(Path(tmp), args.tests, args.wait)
        serial, serial_s, _ = _run(light, 1)
        parallel, parallel_s, _ = _run(light, 2)
        speedup = serial_s / parallel_s
        print(
            f"light   {args.tests} tests of {args.wait}s   --jobs 1 {serial_s:6.1f}s   --jobs 2 {parallel_s:6.1f}s   "
            f"speedup {speedup:4.2f}x   target >= 1.8x: {_mark(speedup >= 1.8)}"
        )
        first = min(t.started for t in parallel.tests) - parallel.started
        print(
            f"overhead per test beyond its body: --jobs 1 {_overhead_ms(serial):5.0f} ms   "
            f"--jobs 2 {_overhead_ms(parallel):5.0f} ms   a worker's start to its first test {first * 1000:5.0f} ms"
        )
        for r in (serial, parallel):
            if r.exit_code != 0:
                status = 1
                print(f"  (not all tests passed: {r.counts()})")
        for count in (2, 3, 4):
            parts = [_run(light, 1, shard=(k, count))[0] for k in range(1, count + 1)]
            ceiling = -(-args.tests // count)
            sizes = [len(p.tests) for p in parts]
            merged = merge_runs([(f"shard{k}", p) for k, p in enumerate(parts, 1)])
            same = _summary(merged) == _summary(serial)
            print(
                f"shards  N={count}   sizes {sizes} (ceil {ceiling}): {_mark(max(sizes) <= ceiling)}   "
                f"merged == unsharded: {_mark(same)}"
            )
    return status


if __name__ == "__main__":
    sys.exit(main())
