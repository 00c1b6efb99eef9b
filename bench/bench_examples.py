"""Wall time of the example suites, and the share spent starting and stopping servers (issue: the
example system).

    .venv/bin/python bench/bench_examples.py

Every test starts its services fresh (PostgreSQL from a template copy, Redis, the broker, the apps)
and stops them afterwards; this shows what that costs against the time the tests themselves take.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from faultbox.runner.run import RunOptions, run_spec
from faultbox.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
SUITES = [ROOT / "examples" / "orders" / "orders.star", ROOT / "examples" / "shop" / "shop.star"]


def main() -> int:
    print(f"{'suite':<28}{'tests':>6}{'wall':>9}{'start':>9}{'stop':>9}{'body':>9}{'start+stop share':>18}")
    status = 0
    for path in SUITES:
        if not path.exists():
            continue
        spec = load_spec(str(path))
        began = time.monotonic()
        result = run_spec(spec, RunOptions(seed=1))
        wall = time.monotonic() - began
        start = sum(t.timings.get("start_ms", 0) for t in result.tests) / 1000
        stop = sum(t.timings.get("stop_ms", 0) for t in result.tests) / 1000
        body = sum(t.timings.get("body_ms", 0) for t in result.tests) / 1000
        share = (start + stop) / wall if wall else 0.0
        name = str(path.relative_to(ROOT))
        print(f"{name:<28}{len(result.tests):>6}{wall:>8.1f}s{start:>8.1f}s{stop:>8.1f}s{body:>8.1f}s{share:>17.0%}")
        if result.exit_code != 0:
            status = 1
            print(f"  (not all tests passed: {result.counts()})")
    return status


if __name__ == "__main__":
    sys.exit(main())
