"""A killed runner, a killed supervisor (issue 13).

- The runner SIGKILLed at seeded random moments of 50 runs (while a test starts, in its body, under
  its fault, in its teardown; serially and with --jobs 2) leaves no process, no cgroup, no network
  namespace, no temporary or data directory, and a results file that parses and holds every test
  whose end was seen before the kill.
- The supervisor SIGKILLed mid-test in 20 runs (a syscall held or delayed at that moment) errs that
  test with SUPERVISOR_FAILED, leaves no service thread blocked in the held syscall, and the next
  test passes.

Moments are chosen by waiting on a condition (a mark the service leaves, the results file), then a
random extra delay from a seeded generator: the randomness is in where the kill lands, and no fixed
sleep stands in for a condition. Two runs go at once (each with its own port, directories and
process tree) to keep the whole file within CI's time.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest

from faultbox.engine.cgroup import _cgroup2_root, _own_path
from faultbox.report.json_results import ResultsError, read
from support import cmdline, free_port, process_tree, wait_until

SPECS = Path(__file__).resolve().parent / "specs"
TESTS = ("test_a_plain", "test_b_fault", "test_c_after")
PHASES = ("start", "body", "fault", "teardown")
CONSOLE_WORDS = ("PASS", "FAIL", "ERROR", "INCONCLUSIVE", "HALTED")  # a finished test's console line
RUNS = int(os.environ.get("FAULTBOX_KILLED_RUNS", "50"))  # fewer while working on it
SUPERVISOR_RUNS = int(os.environ.get("FAULTBOX_KILLED_SUPERVISOR_RUNS", "20"))
GONE_WITHIN = 20.0  # seconds for a killed run's processes to be gone
RUN_WITHIN = 60.0  # seconds for a run's condition to come

if not hasattr(os, "pidfd_open") or os.geteuid() != 0:
    pytest.skip("seccomp supervision and isolated workers need root on Linux", allow_module_level=True)


def _cgroup_parent() -> Path | None:
    """Where faultbox makes its faultbox-<pid> cgroups (the runner's cgroup, as ours)."""
    root = _cgroup2_root()
    return None if root is None else root / _own_path().lstrip("/")


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]


def _netns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def _tagged(tag: bytes) -> list[int]:
    """Live (not zombie) processes whose environment carries the run's tag: everything the run
    started inherits it, whoever its parent is now."""
    out = []
    for pid in _pids():
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if tag in env.split(b"\0"):
            stat = _stat(pid)
            if stat is not None and stat[0] != "Z":
                out.append(pid)
    return out


class Tracker:
    """Every process of a run's tree, polled while the runner lives: (pid, start time), and the
    network namespaces they were in."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, str] = {}
        self.netns: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.scan()
            self._stop.wait(0.025)

    def scan(self) -> None:
        for pid in process_tree(self.root):
            stat = _stat(pid)
            if stat is None or pid in self.seen:
                continue
            self.seen[pid] = stat[1]
            ns = _netns(pid)
            if ns is not None:
                self.netns.add(ns)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def alive(self) -> list[int]:
        """Tracked processes that still run (the same process: its start time matches)."""
        out = []
        for pid, started in self.seen.items():
            stat = _stat(pid)
            if stat is not None and stat[1] == started and stat[0] != "Z":
                out.append(pid)
        return out


@dataclass
class Run:
    """One run of a spec by the real command line, in directories of its own."""

    base: Path
    spec: str
    jobs: int
    select: str = ""  # --test
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.mark = self.base / "mark"
        self.tmp = self.base / "tmp"  # TMPDIR: where the run makes its faultbox-run-* directory
        self.specdir = self.base / "spec"  # a copy: .faultbox/durations.json is written beside it
        for d in (self.mark, self.tmp, self.specdir):
            d.mkdir(parents=True)
        shutil.copy(SPECS / self.spec, self.specdir / self.spec)
        self.results = self.base / "res.json"
        self.out = self.base / "out.txt"
        self.tag = f"FAULTBOX_KILLED_TEST={self.base.name}".encode()
        self.proc: subprocess.Popen[bytes] | None = None
        self.tracker: Tracker | None = None

    def start(self) -> None:
        argv = [
            sys.executable, "-m", "faultbox", "test", str(self.specdir / self.spec),
            "--output", str(self.results), "--seed", "1", "--jobs", str(self.jobs),
            "--var", f"port={self.port}", "--var", f"python={sys.executable}",
            "--var", f"svc={SPECS / 'killed_svc.py'}", "--var", f"mark={self.mark}",
        ]  # fmt: skip
        if self.select:
            argv += ["--test", self.select]
        env = {**os.environ, "TMPDIR": str(self.tmp), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        key, _, value = self.tag.decode().partition("=")
        env[key] = value
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.tracker = Tracker(self.proc.pid)

    def marks(self, what: str) -> list[int]:
        """Pids of the service processes that left this mark, in order."""
        try:
            lines = (self.mark / "events").read_text().splitlines()
        except OSError:
            return []
        return [int(line.split()[1]) for line in lines if line.split()[0] == what and len(line.split()) == 2]

    def finished_seen(self) -> set[str]:
        """Tests whose end the run has shown: a console line, or an entry of the results file."""
        seen = set()
        try:
            for line in self.out.read_text(errors="replace").splitlines():
                words = line.split()
                if len(words) >= 2 and words[0] in CONSOLE_WORDS and words[1] in TESTS:
                    seen.add(words[1])
        except OSError:
            pass
        try:
            seen.update(t.name for t in read(str(self.results)).tests)
        except ResultsError:
            pass  # not there yet, or read while it is being written
        return seen

    def wait_for(self, cond: Callable[[], object], what: str) -> bool:
        """Wait for `cond`; False when the runner ended first."""
        assert self.proc is not None
        deadline = time.monotonic() + RUN_WITHIN
        while not cond():
            if self.proc.poll() is not None:
                return bool(cond())
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.base.name}: timed out waiting for {what}; output:\n{self._output()}")
            time.sleep(0.005)
        return True

    def sleep_unless_done(self, seconds: float) -> None:
        assert self.proc is not None
        try:
            self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            pass

    def _output(self) -> str:
        try:
            return self.out.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Kill the runner if it still runs (only this run's own process, by its pid)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        if self.tracker is not None:
            self.tracker.stop()


@dataclass
class Leftovers:
    processes: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # stray files beside the results or the spec: reported only

    def problems(self) -> list[str]:
        return [*self.processes, *self.cgroups, *self.netns, *self.dirs]


def _leftovers(run: Run) -> Leftovers:
    """Once the run's processes are gone (or the wait gave up): what it left."""
    assert run.tracker is not None
    tracker = run.tracker
    wait_until_or_not(lambda: not tracker.alive() and not _tagged(run.tag), GONE_WITHIN)
    left = Leftovers()
    pids = sorted(set(tracker.alive()) | set(_tagged(run.tag)))
    left.processes = [f"process {p}: {cmdline(p)[:120]}" for p in pids]
    own = _netns(os.getpid())
    holders: dict[str, list[int]] = {}
    for pid in _pids():
        ns = _netns(pid)
        if ns is not None and ns != own and ns in tracker.netns:
            holders.setdefault(ns, []).append(pid)
    left.netns = [f"network namespace {ns} held by {ps}" for ns, ps in holders.items()]
    parent = _cgroup_parent()
    if parent is not None:
        left.cgroups = [
            f"cgroup {parent / f'faultbox-{p}'}" for p in tracker.seen if (parent / f"faultbox-{p}").exists()
        ]
    left.dirs = [f"left in TMPDIR: {p.name}" for p in run.tmp.iterdir()]
    _clean(pids, [parent / f"faultbox-{p}" for p in tracker.seen] if parent is not None else [])
    left.files = [p.name for p in run.base.iterdir() if p.name.startswith("res.json.")]
    cache = run.specdir / ".faultbox"
    if cache.is_dir():
        left.files += [f".faultbox/{p.name}" for p in cache.iterdir() if p.name != "durations.json"]
    return left


def _clean(pids: list[int], cgroups: list[Path]) -> None:
    """What a failing run left, removed after it was counted (processes of this run only)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for group in cgroups:
        if group.is_dir():
            below = sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for path in [*below, group]:
                wait_until_or_not(partial(_rmdir, path), 5.0)


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def wait_until_or_not(cond: Callable[[], object], timeout: float) -> bool:
    """Poll `cond` (every 20 ms: scanning /proc costs) until it holds or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def base() -> Iterator[Path]:
    # Outside /tmp: a --jobs worker sees its own /tmp, so marks and TMPDIR there would be invisible
    # from here (and a worker's run directory out there is what its reaper must remove).
    path = Path(tempfile.mkdtemp(prefix="faultbox-killed-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- the runner killed -------------------------------------------------------------------------


@dataclass
class Outcome:
    index: int
    jobs: int
    phase: str
    landed: str  # where the kill came: "killed" or "ended first"
    seen: set[str]
    recorded: list[str]
    left: Leftovers
    error: str = ""


def _kill_runner(run: Run, phase: str, rng: random.Random) -> tuple[str, set[str]]:
    """Wait for the phase's condition, then a random extra delay; SIGKILL the runner."""
    assert run.proc is not None
    k = rng.randrange(len(TESTS))
    if phase == "start":
        if k == 0:  # the run itself starting: spec, supervisor, reaper, cgroups, the first service
            reached = run.wait_for(run.results.exists, "the results file")
            extra = rng.uniform(0.0, 0.4)
        else:  # a later test's services starting, once the one before it stopped its service
            reached = run.wait_for(lambda: len(run.marks("term")) >= k, f"teardown {k}")
            extra = rng.uniform(0.0, 0.25)
    elif phase == "body":
        bodies = ("cmd-PING", "cmd-WRITE8", "cmd-WRITE2")  # each test's first command
        reached = run.wait_for(lambda: sum(1 for m in bodies if run.marks(m)) > k, f"body {k}")
        extra = rng.uniform(0.0, 0.03)
    elif phase == "fault":  # the delayed writes of test_b_fault: 8 x 25 ms under the supervisor
        reached = run.wait_for(lambda: run.marks("cmd-WRITE8"), "the fault")
        extra = rng.uniform(0.0, 0.25)
    else:  # the k-th test's service got SIGTERM and takes 150 ms; then the rest of the teardown
        reached = run.wait_for(lambda: len(run.marks("term")) > k, f"teardown {k}")
        extra = rng.uniform(0.0, 0.25)
    if reached:
        run.sleep_unless_done(extra)
    seen = run.finished_seen()  # read before the kill: all of it must be in the file after it
    landed = "killed" if run.proc.poll() is None else "ended first"
    if landed == "killed":
        os.kill(run.proc.pid, signal.SIGKILL)
    run.stop()
    return landed, seen


def _one_killed_run(index: int, base: Path, jobs: int, phase: str, seed: int) -> Outcome:
    rng = random.Random(seed)
    run = Run(base / f"run{index:02d}", "killed.star", jobs)
    run.start()
    try:
        landed, seen = _kill_runner(run, phase, rng)
    except BaseException:
        run.stop()
        raise
    left = _leftovers(run)
    recorded: list[str] = []
    error = ""
    if run.results.exists():
        try:
            result = read(str(run.results))
            recorded = [t.name for t in result.tests]
            for t in result.tests:
                assert t.outcome.value and t.duration_ms >= 0
        except ResultsError as exc:
            error = f"the results file does not parse: {exc}"
    elif seen:
        error = f"no results file, but {sorted(seen)} finished"
    return Outcome(index, jobs, phase, landed, seen, recorded, left, error)


def test_a_runner_killed_at_random_moments_leaves_nothing_behind(base: Path) -> None:
    began = time.monotonic()
    rng = random.Random(13)
    phases = [PHASES[i % len(PHASES)] for i in range(RUNS)]
    rng.shuffle(phases)
    plans = [(i, 2 if i % 5 == 4 else 1, phases[i], rng.randrange(1 << 30)) for i in range(RUNS)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda p: _one_killed_run(p[0], base, p[1], p[2], p[3]), plans))
    problems = []
    for o in outcomes:
        for what in o.left.problems():
            problems.append(f"run {o.index} (jobs={o.jobs}, {o.phase}): {what}")
        if o.error:
            problems.append(f"run {o.index} (jobs={o.jobs}, {o.phase}): {o.error}")
        missing = o.seen - set(o.recorded)
        if missing:
            problems.append(
                f"run {o.index} (jobs={o.jobs}, {o.phase}): {sorted(missing)} finished before the kill "
                f"but the results file holds only {o.recorded}"
            )
    killed = [o for o in outcomes if o.landed == "killed"]
    by_phase = Counter(o.phase for o in killed)
    stray = sorted({f for o in outcomes for f in o.left.files})
    print(
        f"\nkilled runner: {len(outcomes)} runs ({sum(o.jobs == 2 for o in outcomes)} with --jobs 2), "
        f"{len(killed)} killed ({', '.join(f'{p} {by_phase[p]}' for p in PHASES)}), "
        f"{len(outcomes) - len(killed)} ended before the kill; "
        f"tests recorded before the kill: {sum(len(o.recorded) for o in killed)}; "
        f"leftovers: processes {sum(len(o.left.processes) for o in outcomes)}, "
        f"cgroups {sum(len(o.left.cgroups) for o in outcomes)}, "
        f"network namespaces {sum(len(o.left.netns) for o in outcomes)}, "
        f"directories {sum(len(o.left.dirs) for o in outcomes)}, "
        f"stray files {sum(len(o.left.files) for o in outcomes)} {stray}; "
        f"{time.monotonic() - began:.1f}s"
    )
    assert not problems, "\n".join(problems)
    assert len(killed) >= RUNS * 0.8, "most kills should land while the run runs"
    assert all(by_phase[p] > 0 for p in PHASES)


# -- the supervisor killed ---------------------------------------------------------------------

SUPERVISED = ("test_a_delayed", "test_b_held", "test_c_next")


def _blocked_in_write(pid: int) -> bool:
    """A thread of the process is in write(2) (x86_64: 1) right now."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            if Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()[0] == "1":
                return True
        except (OSError, IndexError):
            continue
    return False


def _one_supervisor_kill(index: int, base: Path, seed: int) -> tuple[str, str]:
    rng = random.Random(seed)
    target = rng.choice(SUPERVISED[:2])
    tests = [target, SUPERVISED[-1]]
    run = Run(base / f"sup{index:02d}", "killed_supervisor.star", 1, f"test_[{target[5]}{SUPERVISED[-1][5]}]_*")
    run.start()
    assert run.proc is not None and run.tracker is not None
    try:
        if target == "test_a_delayed":  # under a 60 ms delay per write, 5 writes
            run.wait_for(lambda: run.marks("cmd-WRITE5"), "the delayed writes")
            run.sleep_unless_done(rng.uniform(0.0, 0.2))
        else:  # a write parked by hold(), released 300 ms after it was
            run.wait_for(lambda: run.marks("cmd-WRITE1"), "the held write")
            service = run.marks("start")[-1]
            run.wait_for(lambda: _blocked_in_write(service), "the service's thread parked in write")
            run.sleep_unless_done(rng.uniform(0.0, 0.2))
        assert run.proc.poll() is None, f"the run ended before the kill:\n{run._output()}"
        run.tracker.scan()
        supervisors = [p for p in process_tree(run.proc.pid) if "faultbox.engine.supervisor" in cmdline(p)]
        assert len(supervisors) == 1, f"one supervisor in the runner's tree: {supervisors}"
        victim = run.marks("start")[-1]
        os.kill(supervisors[0], signal.SIGKILL)
        # The parked or delayed write returns (no one is left to answer it): no thread of the
        # service stays in write(2), until its teardown stops it.
        wait_until(
            lambda: not _blocked_in_write(victim) or run.proc is None or run.proc.poll() is not None,
            "the service's write to return after the supervisor died",
            20,
        )
        code = run.proc.wait(60)
    finally:
        run.stop()
    left = _leftovers(run)
    assert not left.problems(), left.problems()
    result = read(str(run.results))
    by_name = {t.name: t for t in result.tests}
    assert list(by_name) == tests, f"every test ran: {list(by_name)}"
    killed = by_name[target]
    assert killed.outcome.value == "errored" and killed.code == "SUPERVISOR_FAILED", (
        f"{target}: {killed.outcome.value} {killed.code} {killed.reason}"
    )
    t = by_name[tests[1]]
    assert t.outcome.value == "passed", f"{t.name} after the supervisor died in {target}: {t.outcome.value} {t.reason}"
    assert code not in (0, None), "an errored test fails the run"
    return target, killed.reason


def test_b_supervisor_killed_mid_test_errs_that_test_only(base: Path) -> None:
    began = time.monotonic()
    rng = random.Random(20)
    seeds = [rng.randrange(1 << 30) for _ in range(SUPERVISOR_RUNS)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda p: _one_supervisor_kill(p[0], base, p[1]), enumerate(seeds)))
    targets = Counter(t for t, _ in outcomes)
    print(
        f"\nkilled supervisor: {len(outcomes)} runs ({', '.join(f'{k} {v}' for k, v in sorted(targets.items()))}), "
        f"each errored SUPERVISOR_FAILED with the tests after it passing, no leftovers; "
        f"{time.monotonic() - began:.1f}s"
    )
