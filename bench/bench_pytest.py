"""What running specs through pytest costs, against faultbox's own command on the same specs.

    .venv/bin/python bench/bench_pytest.py              # ~1-2 min on 2 cores; --reps to change

Two measurements, each as whole commands run side by side, alternating (ABBA) so that machine
noise hits both alike, medians over --reps (5):

Other pytest plugins installed in the environment (hypothesis, anyio, xdist) are disabled in the pytest
runs: their import time is not faultbox's.

* collection: a spec with a 10 x 10 fault matrix (100 cells) and no other test;
  `pytest --faultbox --collect-only -q SPEC` against `faultbox check SPEC`, twice: as whole commands
  (interpreter and imports included: pytest's own import is a fixed cost no plugin can remove), and
  as the work itself, timed inside each process - pytest's collection phase (pytest_collection to
  pytest_collection_finish, through a timing plugin) against `faultbox check`'s main() - both
  including the import of the spec language. Target, on the work itself: ≤ 1.2x.
* per item: specs of --small (10) and --large (100) tests with no service (each an assertion), run by
  `pytest --faultbox SPEC` and by `faultbox test SPEC --jobs 1`. Per-item overhead =
  ((pytest large - pytest small) - (faultbox large - faultbox small)) / (large - small): what an item
  costs through pytest beyond what the same test costs through faultbox, with start-up costs cancelled.
  Target: ≤ 20 ms.

Targets are printed with PASS/MISS; the exit status is always 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

PY = sys.executable


def matrix_spec(cells_per_side: int) -> str:
    scenarios = "".join(f"def s{i}():\n    svc.main.send(data = 'x')\n\n" for i in range(cells_per_side))
    faults = ", ".join(
        f'fault_assumption("f{i}", target = svc, write = delay("{i + 1}ms"))' for i in range(cells_per_side)
    )
    return (
        'svc = service("svc", "/bin/sleep", interface("main", "tcp", 18999), args = ["60"],\n'
        '    healthcheck = tcp("127.0.0.1:18999"))\n\n'
        + scenarios
        + f"fault_matrix(scenarios = [{', '.join(f's{i}' for i in range(cells_per_side))}],\n"
        f"    faults = [{faults}], default_expect = lambda r: None)\n"
    )


def tests_spec(count: int) -> str:
    return "".join(f"def test_{i:04d}():\n    assert_eq({i} + 1, {i + 1})\n\n" for i in range(count))


def timed(cmd: Sequence[str], cwd: Path, ok: Sequence[int] = (0,)) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    began = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    took = time.perf_counter() - began
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return took


TIMING_PLUGIN = """
import os, time

def pytest_collection(session):
    session.config._fb_began = time.perf_counter()

def pytest_collection_finish(session):
    with open(os.environ["FB_BENCH_OUT"], "a") as out:
        out.write(f"{time.perf_counter() - session.config._fb_began}\\n")
"""

CHECK_TIMED = """
import contextlib, io, os, sys, time
from faultbox.cli.main import main
began = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    main(["check", sys.argv[1]])
with open(os.environ["FB_BENCH_OUT"], "a") as out:
    out.write(f"{time.perf_counter() - began}\\n")
"""


def phases(cwd: Path, spec: str, reps: int) -> tuple[float, float]:
    """Medians of the collection phase inside pytest and of check's main(), ABBA, after a warm-up."""
    (cwd / "fbtiming.py").write_text(TIMING_PLUGIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(cwd)
    collect = pytest_cmd(spec, "--collect-only", "-p", "fbtiming")
    check = [PY, "-c", CHECK_TIMED, spec]
    samples: dict[str, list[float]] = {"collect": [], "check": []}
    for i in range(reps + 1):
        order = (("collect", collect), ("check", check)) if i % 2 == 0 else (("check", check), ("collect", collect))
        for name, cmd in order:
            out = cwd / "phase.txt"
            out.unlink(missing_ok=True)
            subprocess.run(cmd, cwd=cwd, env={**env, "FB_BENCH_OUT": str(out)}, capture_output=True, check=True)
            if i:  # the first round warms the disk cache
                samples[name].append(float(out.read_text()))
    return statistics.median(samples["collect"]), statistics.median(samples["check"])


def side_by_side(a: Sequence[str], b: Sequence[str], cwd: Path, reps: int) -> tuple[float, float]:
    """Medians of a and b, run in ABBA order after one warm-up each."""
    timed(a, cwd)
    timed(b, cwd)
    ta: list[float] = []
    tb: list[float] = []
    for i in range(reps):
        order = ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta))
        for cmd, out in order:
            out.append(timed(cmd, cwd))
    return statistics.median(ta), statistics.median(tb)


# Other plugins installed beside faultbox are not faultbox's cost: hypothesis alone imports for
# seconds at every pytest start. Only faultbox's plugin (and pytest's own) run here.
OTHERS = ("-p", "no:hypothesispytest", "-p", "no:anyio", "-p", "no:xdist", "-p", "no:cacheprovider")


def pytest_cmd(spec: str, *extra: str) -> list[str]:
    return [PY, "-m", "pytest", *OTHERS, "-q", "--faultbox", spec, *extra]


def faultbox_cmd(*args: str) -> list[str]:
    return [PY, "-m", "faultbox", *args]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--large", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="faultbox-bench-pytest-") as tmp:
        cwd = Path(tmp)
        (cwd / "pytest.ini").write_text("[pytest]\n")
        (cwd / "matrix.star").write_text(matrix_spec(10))
        (cwd / "small.star").write_text(tests_spec(args.small))
        (cwd / "large.star").write_text(tests_spec(args.large))

        collect, check = side_by_side(
            pytest_cmd("matrix.star", "--collect-only"), faultbox_cmd("check", "matrix.star"), cwd, args.reps
        )
        phase_collect, phase_check = phases(cwd, "matrix.star", args.reps)
        ratio = phase_collect / phase_check
        print("collection of a spec with 100 matrix cells (median of", args.reps, "runs each)")
        print(f"  {'':34} {'command':>9} {'the work':>9}")
        print(f"  pytest --faultbox --collect-only   {collect * 1000:6.0f} ms {phase_collect * 1000:6.0f} ms")
        print(f"  faultbox check                     {check * 1000:6.0f} ms {phase_check * 1000:6.0f} ms")
        print(
            f"  ratio                              {collect / check:7.2f}x {ratio:8.2f}x   "
            f"target on the work <= 1.2x   {verdict(ratio <= 1.2)}"
        )

        runs = {}
        for size in ("small", "large"):
            runs[size] = side_by_side(
                pytest_cmd(f"{size}.star"), faultbox_cmd("test", f"{size}.star", "--jobs", "1"), cwd, args.reps
            )
        n = args.large - args.small
        per_pytest = (runs["large"][0] - runs["small"][0]) / n
        per_faultbox = (runs["large"][1] - runs["small"][1]) / n
        overhead = per_pytest - per_faultbox
        print(f"\nper test, from {args.small} and {args.large} tests without services (median of {args.reps})")
        print(f"  {'':20} {args.small:>6} tests {args.large:>6} tests   per test")
        print(
            f"  {'pytest --faultbox':20} {runs['small'][0]:11.2f} s {runs['large'][0]:11.2f} s "
            f"{per_pytest * 1000:8.1f} ms"
        )
        print(
            f"  {'faultbox test':20} {runs['small'][1]:11.2f} s {runs['large'][1]:11.2f} s "
            f"{per_faultbox * 1000:8.1f} ms"
        )
        print(f"  overhead per item {overhead * 1000:8.1f} ms   target <= 20 ms   {verdict(overhead <= 0.020)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
