"""Endurance and load (issue 13): what a long run or a loud service costs the runner.

- 500 consecutive tests in one run, each starting a service and doing a step, leak no file
  descriptor, thread, process or memory: the runner's counts after test 50 (warm-up) and after
  test 500 are printed and compared.
- One test whose service prints 1,000,000 lines (each a `stdout` event) with a stateful monitor
  on every one: the monitor sees each event in order, and the peak memory per event is printed
  and bounded (the trace keeps every event: it has no cap or spill).
- A service printing 100 MB without a newline costs bounded memory: a line keeps at most
  LINE_CAP bytes (runner/pump.py).

The load tests run the spec in a subprocess (specs/endurance/probe.py) and read its own peak RSS,
so this process's memory does not blur the figure. Speeds are printed, never asserted.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from faultbox.model.result import RunResult, TestResult
from faultbox.runner.pump import CUT_MARK, LINE_CAP, MAX_LINE, IoPump
from faultbox.runner.run import RunOptions, run_spec
from faultbox.spec import load_spec
from support import free_port

pytestmark = pytest.mark.slow

SPECS = Path(__file__).parent / "specs" / "endurance"
TESTS = 500
WARM_UP = 50
MB = 1 << 20


# -- what the runner process holds ---------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _descendants() -> dict[int, str]:
    """pid -> state ("S", "Z", ...) of every process below this one."""
    parent: dict[int, int] = {}
    state: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        state[int(entry)], parent[int(entry)] = fields[0], int(fields[1])
    found: dict[int, str] = {}
    frontier = [os.getpid()]
    while frontier:
        pid = frontier.pop()
        for child, ppid in parent.items():
            if ppid == pid and child not in found:
                found[child] = state[child]
                frontier.append(child)
    return found


@dataclass
class Sample:
    after: int  # tests finished
    fds: int
    threads: int
    tasks: int
    processes: int
    zombies: int
    rss: int

    @classmethod
    def take(cls, after: int) -> Sample:
        gc.collect()
        procs = _descendants()
        return cls(
            after=after,
            fds=len(os.listdir("/proc/self/fd")),
            threads=threading.active_count(),
            tasks=len(os.listdir("/proc/self/task")),
            processes=len(procs),
            zombies=sum(1 for s in procs.values() if s == "Z"),
            rss=_rss(),
        )

    def __str__(self) -> str:
        return (
            f"after {self.after:3d} tests: fds={self.fds} threads={self.threads} tasks={self.tasks} "
            f"processes={self.processes} zombies={self.zombies} rss={self.rss / MB:.1f} MB"
        )


class Sampler:
    """A RunListener that samples the process after chosen tests (and checks every verdict)."""

    def __init__(self, at: set[int]) -> None:
        self.at = at
        self.done = 0
        self.samples: dict[int, Sample] = {}
        self.failed: list[str] = []
        self.events = 0
        self.started = time.monotonic()
        self.times: dict[int, float] = {}

    def run_started(self, run: Any, tests: Any) -> None:
        self.started = time.monotonic()

    def test_started(self, name: str) -> None:
        pass

    def test_finished(self, result: TestResult) -> None:
        self.done += 1
        self.events += len(result.events)
        if result.outcome.value != "passed":
            self.failed.append(f"{result.name}: {result.outcome.value} {result.reason}")
        if self.done in self.at:
            self.times[self.done] = time.monotonic() - self.started
            self.samples[self.done] = Sample.take(self.done)

    def run_finished(self, result: RunResult) -> None:
        pass


def _many_tests_spec(path: Path, tests: int) -> Path:
    port = free_port()
    head = f"""\
# {tests} tests, generated: each starts the line server (through its proxy) and does one step.
svc = service("svc", {json.dumps(sys.executable)}, interface("main", "tcp", {port}),
    args = ["-S", "-I", {json.dumps(str(SPECS / "line_server.py"))}], env = {{"PORT": "{port}"}},
    healthcheck = tcp("127.0.0.1:{port}"), observe = [observe.stdout()])

def ping():
    assert_eq(svc.main.send(data = "PING"), "PONG")
    assert_eventually(type = "stdout", service = "svc", raw = "listening")
"""
    body = "".join(f"\ndef test_{i:04d}():\n    ping()\n" for i in range(tests))
    path.write_text(head + body)
    return path


def test_500_tests_in_one_run_leak_nothing(tmp_path: Path) -> None:
    spec = load_spec(str(_many_tests_spec(tmp_path / "many.star", TESTS)))
    before_run = _descendants()
    sampler = Sampler({WARM_UP, TESTS})
    result = run_spec(spec, RunOptions(seed=1, timeout=60.0), [sampler])
    assert not sampler.failed, "\n".join(sampler.failed[:10])
    assert len(result.tests) == TESTS
    warm, last = sampler.samples[WARM_UP], sampler.samples[TESTS]
    per_test = (last.rss - warm.rss) / (TESTS - WARM_UP)
    seconds = sampler.times[TESTS] - sampler.times[WARM_UP]
    print(f"\n{warm}\n{last}")
    print(
        f"{TESTS} tests in {sampler.times[TESTS]:.1f} s ({seconds / (TESTS - WARM_UP) * 1000:.0f} ms a test after "
        f"warm-up); rss growth {(last.rss - warm.rss) / MB:+.2f} MB over {TESTS - WARM_UP} tests "
        f"({per_test / 1024:+.1f} KB a test; the results keep {sampler.events} events)"
    )
    assert last.fds <= warm.fds + 2, f"file descriptors: {warm.fds} -> {last.fds}"
    assert last.threads <= warm.threads + 2, f"threads: {warm.threads} -> {last.threads}"
    assert last.tasks <= warm.tasks + 2, f"tasks: {warm.tasks} -> {last.tasks}"
    assert last.processes <= warm.processes, f"processes: {warm.processes} -> {last.processes}"
    assert last.zombies == 0 and warm.zombies == 0, f"zombies: {warm.zombies}, {last.zombies}"
    # The results keep every test's events (a few KB a test); a leak of a service's worth of state
    # per test (its buffers, its proxy, its trace) would be far more.
    assert last.rss - warm.rss <= 30 * MB, f"rss grew {(last.rss - warm.rss) / MB:.1f} MB"
    assert per_test <= 40 * 1024, f"{per_test / 1024:.1f} KB a test"
    # When the run is over, every process it started is gone (the supervisor, the proxy worker and
    # the reaper exit with the run's context).
    deadline = time.monotonic() + 20.0
    while set(_descendants()) - set(before_run) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = {pid: s for pid, s in _descendants().items() if pid not in before_run}
    assert not left, f"processes left after the run: {left}"


# -- load: one test, many events -----------------------------------------------------------------


def _probe(spec: str) -> dict[str, Any]:
    """Run a spec in a fresh interpreter; what probe.py measured."""
    done = subprocess.run(
        [sys.executable, str(SPECS / "probe.py"), str(SPECS / spec)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout)
    # The peak since the spec was loaded (the probe resets VmHWM to the RSS of that moment when
    # the kernel allows it; otherwise the peak may include loading's).
    base = out["rss_before"] if out["reset"] else out["hwm_before"]
    out["peak_growth"] = out["hwm_after"] - base
    return out


def test_a_million_events_with_a_monitor_keep_memory_bounded() -> None:
    events = 1_000_000
    out = _probe("million.star")
    (test,) = out["tests"]
    # The monitor checks, for every line k, that it is the k-th stdout event it was called for: the
    # test passes only if it saw every event, in order (a missed or reordered one is a violation).
    assert test["outcome"] == "passed", test["reason"]
    assert test["events"].get("stdout") == events, test["events"]
    per_event = out["peak_growth"] / events
    print(
        f"\n{events} events with a monitor in {out['seconds']:.1f} s ({events / out['seconds']:,.0f} events/s); "
        f"peak rss growth {out['peak_growth'] / MB:.0f} MB = {per_event:.0f} bytes an event "
        f"(kept at the end: {(out['rss_after'] - out['rss_before']) / MB:.0f} MB)"
    )
    # The trace keeps every event (the event, its fields, its vector clock, its place in the
    # indexes): a few hundred bytes each. A copy per event or a second buffer would exceed this.
    assert per_event <= 1024, f"{per_event:.0f} bytes an event"


def test_100_mb_without_newline_costs_bounded_memory() -> None:
    out = _probe("no_newline.star")
    (test,) = out["tests"]
    assert test["outcome"] == "passed", test["reason"]
    pieces = test["events"].get("stdout", 0) - 1  # and the line "end"
    print(
        f"\n100 MB without a newline in {out['seconds']:.1f} s: {pieces} events kept (at most "
        f"{MAX_LINE // 1024} KiB each, {LINE_CAP // MB} MiB of the line); peak rss growth "
        f"{out['peak_growth'] / MB:.1f} MB"
    )
    assert pieces == LINE_CAP // MAX_LINE, test["events"]
    assert test["longest_raw"] <= MAX_LINE + len(CUT_MARK)
    assert test["tails"][-2].endswith(CUT_MARK.decode()), test["tails"]
    assert test["tails"][-1] == "end"
    assert out["peak_growth"] < 50 * MB, f"peak rss grew {out['peak_growth'] / MB:.1f} MB"


def test_the_pump_keeps_the_first_mib_of_a_line_and_the_lines_after_it() -> None:
    """The line reader on its own: an overlong line is cut at LINE_CAP and dropped up to its
    newline, whatever the reads' boundaries; the lines after it are whole."""
    r, w = os.pipe()
    lines: list[str] = []
    ended = threading.Event()
    pump = IoPump()
    with os.fdopen(r, "rb", buffering=0) as reader:
        pump.add(reader, lines.append, ended.set)
        data = b"a" * (3 * MB) + b"\nnext\n" + b"b" * 100_000 + b"\n" + b"c" * (LINE_CAP + 1) + b"\n"
        data += b"d" * LINE_CAP + b"\nlast"

        def write() -> None:
            with os.fdopen(w, "wb", buffering=0) as writer:
                for at in range(0, len(data), 40_000):  # reads do not fall on the lines' edges
                    writer.write(data[at : at + 40_000])

        writer = threading.Thread(target=write)
        writer.start()
        assert ended.wait(60.0)
        writer.join()
        pump.close()
    mark = CUT_MARK.decode()
    pieces = LINE_CAP // MAX_LINE
    assert lines[:pieces] == ["a" * MAX_LINE] * (pieces - 1) + ["a" * MAX_LINE + mark]
    assert lines[pieces] == "next"
    assert lines[pieces + 1 : pieces + 3] == ["b" * MAX_LINE, "b" * (100_000 - MAX_LINE)]
    assert lines[pieces + 3 : 2 * pieces + 3] == ["c" * MAX_LINE] * (pieces - 1) + ["c" * MAX_LINE + mark]
    assert lines[2 * pieces + 3 :] == ["d" * MAX_LINE] * pieces + ["last"]  # exactly LINE_CAP: whole
