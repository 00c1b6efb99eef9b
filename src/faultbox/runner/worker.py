"""A test worker: one process of a parallel run (`faultbox test --jobs N`), with its own network and
/tmp (engine/isolation.py), running the tests its runner hands it one at a time, like a serial run.

Run as `python -m faultbox.runner.worker FD PARENT_PID`, FD a stream socket to the runner
(pool.py). Messages, as length-prefixed JSON (_util/frames.py):

    runner -> worker   {"spec", "variables", "seed", "timeout", "spec_arg", "runs", ...}   once, first
    worker -> runner   {"ready": true} | {"error": why}
    runner -> worker   {"test": name}                                         then its result:
    worker -> runner   {"progress": true}                 after each run of it (--runs, fan-out leaves)
    worker -> runner   {"result": TestResult.to_dict()}
    runner closes the socket: the worker stops its run (services, supervisor, proxies) and exits.

The worker dies with its runner (PR_SET_PDEATHSIG); its reaper then cleans what it started.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

from faultbox._util.frames import recv_frame, send_frame
from faultbox._util.imports import decline_test_data_generators
from faultbox._util.threads import sigterm_as_interrupt
from faultbox.engine._abi import die_with_parent


def _die_with(parent: int) -> None:
    die_with_parent(signal.SIGKILL)
    if os.getppid() != parent:  # the runner was already gone before the line above
        os._exit(1)


def _interrupted_by_the_runner_only() -> None:
    """The runner stops a worker with one SIGTERM. A Ctrl-C at the terminal reaches the worker too
    (same process group): ignored here, so that the runner's SIGTERM is the only interruption and
    the teardown it starts is not cut short by a second one. (A Python handler, not SIG_IGN, which
    the services started from here would inherit.)"""
    sigterm_as_interrupt()
    signal.signal(signal.SIGINT, lambda signum, frame: None)


def main(argv: list[str]) -> int:
    fd, parent = int(argv[1]), int(argv[2])
    decline_test_data_generators()  # a Kafka fault's check imports the codec: 0.6 s of CPU spared
    _die_with(parent)
    _interrupted_by_the_runner_only()
    sock = socket.socket(fileno=fd)
    job = recv_frame(sock)
    if job is None:
        return 0
    from faultbox.engine.isolation import IsolationError, isolate

    try:
        isolate()  # before any thread starts: namespaces are per thread until then
    except (IsolationError, OSError) as exc:
        send_frame(sock, {"error": f"cannot isolate a test worker: {exc}"})
        return 1
    try:
        return _serve(sock, job)
    except KeyboardInterrupt:
        return 130


def _serve(sock: socket.socket, job: dict[str, object]) -> int:
    from faultbox.errors import SpecError
    from faultbox.model.decisions import Decisions
    from faultbox.runner.serial import SpecRunner, UnknownTest
    from faultbox.spec import load_spec

    variables = {str(k): str(v) for k, v in dict(job["variables"]).items()}  # type: ignore[call-overload]
    try:
        spec = load_spec(str(job["spec"]), variables)
    except SpecError as exc:
        send_frame(sock, {"error": exc.render()})
        return 1
    seed = int(job["seed"])  # type: ignore[call-overload]
    timeout = float(job["timeout"])  # type: ignore[arg-type]
    runs = int(job.get("runs", 1))  # type: ignore[call-overload]
    runs_all = bool(job.get("runs_all", False))
    leaf = Decisions.from_text(str(job["leaf"])) if job.get("leaf") else None
    shrink = int(job.get("shrink", 0))  # type: ignore[call-overload]
    concurrent = bool(job.get("concurrent_start", False))
    with SpecRunner(
        spec, seed, timeout, spec_arg=str(job["spec_arg"]), leaf=leaf, shrink=shrink, concurrent_start=concurrent
    ) as tests:
        tests.on_run_end = lambda: send_frame(sock, {"progress": True})
        try:
            send_frame(sock, {"ready": True})
        except OSError:
            return 0  # the run ended before this worker was needed
        while True:
            message = recv_frame(sock)
            if message is None:
                return 0
            try:
                result = tests.run_repeated(str(message["test"]), runs, runs_all)
            except UnknownTest as exc:
                send_frame(sock, {"error": exc.message})
                return 1
            send_frame(sock, {"result": result.to_dict()})


if __name__ == "__main__":
    sys.exit(main(sys.argv))
