"""Running a suite's tests at once: up to N test workers (worker.py), each in its own network and
/tmp, each running one test at a time, handed the next as it finishes.

The runner's side owns the workers' lifetimes. A worker that dies errs its test with the reason and
is replaced for the tests still waiting; a test that outlives its deadline by far more than the test
itself allows (its worker hangs) is errored and its worker killed. On Ctrl-C or SIGTERM every worker
is asked to stop (its services stopped, its files removed) and killed if it does not in time; a
killed worker's reaper cleans what it started. Workers are started from the main thread only: they
die with the thread that started them (PR_SET_PDEATHSIG), which must outlive them.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faultbox._util.frames import FrameReader, send_frame
from faultbox.errors import Code
from faultbox.model.result import Outcome, TestResult

_STOP_WAIT = 30.0  # seconds a worker gets to stop its services after being told to
_HANG_MARGIN = 120.0  # beyond a test's own budget and abandonment, before its worker is killed
_READY_WITHIN = 120.0  # seconds a new worker has to load the spec and report ready


@dataclass
class Job:
    spec: str
    variables: dict[str, str]
    seed: int
    timeout: float
    spec_arg: str
    budget: float = 0.0  # seconds a test may take beyond its deadline: healthchecks, stops
    # --runs N: a worker runs each test up to N times (SpecRunner.run_repeated), each with its
    # leaves; it reports progress after each run, which restarts the hang clock.
    runs: int = 1
    runs_all: bool = False
    leaf: str = ""  # --leaf: the decisions every test runs with (no fan-out)
    shrink: int = 0  # runs to spend shrinking a failed test
    concurrent_start: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    sock: socket.socket
    reader: FrameReader = field(default_factory=FrameReader)
    ready: bool = False
    test: str | None = None
    since: float = field(default_factory=time.monotonic)  # started, then given its current test
    failure: str = ""  # why it could not run tests (it said so before closing)


class WorkerPool:
    def __init__(self, job: Job, jobs: int) -> None:
        self.job = job
        self.jobs = jobs
        self._sel = selectors.DefaultSelector()
        self._workers: list[_Worker] = []
        self._last_failure = ""  # why the last worker that never became ready ended

    def run(
        self,
        names: Sequence[str],
        started: Callable[[str], None],
        finished: Callable[[TestResult], None],
        pick: Callable[[Sequence[str], list[str]], int] = lambda waiting, running: 0,
    ) -> None:
        """Run `names`; a free worker takes `waiting[pick(waiting, running)]`."""
        waiting = list(names)
        start_failures = 0
        try:
            while waiting or any(w.test for w in self._workers):
                while waiting and len(self._workers) < self.jobs and len(self._workers) < len(waiting) + self._busy():
                    self._spawn()
                for w in self._workers:
                    if w.ready and w.test is None and waiting:
                        name = waiting.pop(pick(waiting, [t.test for t in self._workers if t.test]))
                        w.test, w.since = name, time.monotonic()
                        started(name)
                        try:
                            send_frame(w.sock, {"test": name})
                        except OSError:  # it died between tests: retired below, its test errored
                            w.reader.closed = True
                for w, message in self._receive(timeout=1.0):
                    if "ready" in message:
                        w.ready = True
                        start_failures = 0
                    elif "progress" in message:  # a leaf or run ended: the test is not hung
                        w.since = time.monotonic()
                    elif "result" in message:
                        finished(TestResult.from_dict(message["result"]))
                        w.test = None
                    elif "error" in message:
                        w.failure = str(message["error"])
                for w in list(self._workers):
                    if w.reader.closed or self._hung(w):
                        self._retire(w, finished)
                        if not w.ready:
                            start_failures += 1
                if start_failures >= 2 and not any(w.ready for w in self._workers):
                    # workers cannot start here: say why on every test left
                    why = self._last_failure or "test workers exit as they start"
                    while waiting:
                        name = waiting.pop(0)
                        started(name)
                        finished(_errored(name, f"no test worker could start: {why}"))
        finally:
            self._stop_all()

    def _busy(self) -> int:
        return sum(1 for w in self._workers if w.test is not None)

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        proc = subprocess.Popen(
            [sys.executable, "-m", "faultbox.runner.worker", str(theirs.fileno()), str(os.getpid())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=_stderr(),  # stdout may carry the run's JSON result (--format json)
        )
        theirs.close()
        worker = _Worker(proc, ours)
        send_frame(ours, self.job.to_dict())
        self._sel.register(ours, selectors.EVENT_READ, worker)
        self._workers.append(worker)

    def _receive(self, timeout: float) -> list[tuple[_Worker, dict[str, Any]]]:
        out: list[tuple[_Worker, dict[str, Any]]] = []
        for key, _ in self._sel.select(timeout):
            w: _Worker = key.data
            try:
                data = w.sock.recv(1 << 20)
            except OSError:
                data = b""
            out.extend((w, m) for m in w.reader.feed(data))
        return out

    def _limit(self) -> float:
        return self.job.timeout + self.job.budget + _HANG_MARGIN

    def _hung(self, w: _Worker) -> bool:
        if not w.ready:
            return time.monotonic() - w.since > _READY_WITHIN
        return w.test is not None and time.monotonic() - w.since > self._limit()

    def _retire(self, w: _Worker, finished: Callable[[TestResult], None]) -> None:
        hung = not w.reader.closed
        if hung:
            w.proc.kill()
        status = _wait(w.proc, _STOP_WAIT)
        self._sel.unregister(w.sock)
        w.sock.close()
        self._workers.remove(w)
        if w.failure:
            self._last_failure = w.failure
        elif not w.ready:
            waited = f"did not load the spec within {_READY_WITHIN:.0f}s" if hung else _status(status)
            self._last_failure = f"a worker {waited}"
        if w.test is not None:
            if hung:
                why = f"the test did not end within {self._limit():.0f}s; its worker was killed"
            else:
                why = w.failure or f"the worker running it {_status(status)}"
            finished(_errored(w.test, why))

    def _stop_all(self) -> None:
        """Close every worker's socket (each stops its run and exits); interrupt, then kill, the
        slow ones."""
        for w in self._workers:
            self._sel.unregister(w.sock)
            w.sock.close()
            if w.test is not None:
                _signal(w.proc, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_WAIT
        for w in self._workers:
            if _wait(w.proc, max(0.0, deadline - time.monotonic())) is None:
                w.proc.kill()
                w.proc.wait()
        self._workers.clear()
        self._sel.close()


def _stderr() -> int | None:
    try:
        return sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):
        return None


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _status(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _errored(name: str, why: str) -> TestResult:
    return TestResult(name=name, outcome=Outcome.ERRORED, reason=why, code=Code.WORKER_DIED.value, started=time.time())
