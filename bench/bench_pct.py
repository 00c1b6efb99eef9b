"""Exploration against repetition: how many runs find the counter example's lost update.

    python bench/bench_pct.py [--trials 3] [--max-pct 40] [--max-plain 40]

The system is examples/counter: two front ends each read, add one and write a shared counter in a
store; a like is lost only when both read before either writes. Each trial searches twice, with real
services under the real supervisor:

* PCT: the test's parallel() forced to its leaves, as `interleavings=N` makes them:
  Schedule("pct", seed=s, depth=2, index=i) for i = 0, 1, ... (s = 1000 * trial + 1), draws of one
  seed without replacement, until a run fails;
* plain: the same test without a schedule (the branches run concurrently, as `--runs N` would run
  them), until a run fails or --max-plain runs passed.

It prints the runs each search took and the seeds PCT used, then the ratio of the means (plain runs
over PCT runs; a plain search that never failed counts its cap, so the ratio is a lower bound). It
also counts, in one plain run's trace, the calls a scheduled run holds (sends on sockets) against
every write the services made (pipes and files included): the steps PCT would have to order if it
held writes whatever their fd, as the reference holds them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from faultbox.model.decisions import Decisions, Schedule  # noqa: E402
from faultbox.model.result import Outcome, TestResult  # noqa: E402
from faultbox.model.syscalls import SCHEDULED_SYSCALLS  # noqa: E402
from faultbox.runner.leaf import LeafState  # noqa: E402
from faultbox.runner.serial import SpecRunner  # noqa: E402
from faultbox.spec import load_spec  # noqa: E402

SPEC = ROOT / "examples" / "counter" / "counter.star"
TEST = "test_both_likes_count"


def _site(runner: SpecRunner) -> str:
    discovery = LeafState()
    runner.run(TEST, leaf=discovery)
    [site] = discovery.sites
    return site.key


def _steps(result: TestResult) -> tuple[int, int]:
    """(socket sends, every write-family call) of the front ends during the test."""
    sends = writes = 0
    for e in result.events:
        if e.type != "syscall" or e.service == "store":
            continue
        name = e.fields.get("syscall", "")
        if name in SCHEDULED_SYSCALLS and e.fields.get("path", "").startswith("socket:"):
            sends += 1
        if name in ("write", "writev", "sendto", "sendmsg", "connect"):
            writes += 1
    return sends, writes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--max-pct", type=int, default=40)
    ap.add_argument("--max-plain", type=int, default=40)
    args = ap.parse_args()
    pct_runs: list[int] = []
    plain_runs: list[int] = []
    plain_found = 0
    run_seconds: list[float] = []
    with SpecRunner(load_spec(str(SPEC)), seed=1, timeout=60) as runner:
        site = _site(runner)
        sends, writes = _steps(runner.run(TEST))
        for trial in range(args.trials):
            seed = 1000 * trial + 1
            seeds: list[int] = []  # the draws' indices
            for index in range(args.max_pct):
                seeds.append(index)
                started = time.monotonic()
                schedule = Schedule("pct", seed=seed, depth=2, index=index)
                result = runner.run(TEST, leaf=LeafState(Decisions(orders={site: schedule})))
                run_seconds.append(time.monotonic() - started)
                if result.outcome is not Outcome.PASSED:
                    break
            found = result.outcome is not Outcome.PASSED
            pct_runs.append(len(seeds))
            print(
                f"trial {trial}: PCT {'found it' if found else 'did not find it'} in {len(seeds)} runs "
                f"(seed {seed}, draws {seeds[0]}..{seeds[-1]}; failing schedule {result.decisions or '-'})",
                flush=True,
            )
            n = 0
            while n < args.max_plain:
                n += 1
                started = time.monotonic()
                result = runner.run(TEST)
                run_seconds.append(time.monotonic() - started)
                if result.outcome is not Outcome.PASSED:
                    plain_found += 1
                    break
            plain_runs.append(n)
            state = "found it" if result.outcome is not Outcome.PASSED else "did not find it"
            print(f"trial {trial}: plain {state} in {n} runs", flush=True)
    pct_mean, plain_mean = statistics.mean(pct_runs), statistics.mean(plain_runs)
    bound = "" if plain_found == args.trials else " (at least: plain runs capped)"
    print()
    print(f"{'search':<8} {'runs until found (per trial)':<30} {'mean':>6}")
    print(f"{'PCT':<8} {' '.join(map(str, pct_runs)):<30} {pct_mean:>6.1f}")
    print(f"{'plain':<8} {' '.join(map(str, plain_runs)):<30} {plain_mean:>6.1f}  found in {plain_found}/{args.trials}")
    print(f"ratio plain/PCT: {plain_mean / pct_mean:.1f}x{bound}")
    print(f"a run takes {statistics.median(run_seconds):.2f} s (median, services started and stopped included)")
    print(f"steps of a call: {sends} socket sends held, against {writes} write-family calls in all")


if __name__ == "__main__":
    main()
