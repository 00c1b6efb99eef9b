"""Run one spec in this process and print what the runner cost as JSON on stdout.

    probe.py SPEC

The peak RSS (VmHWM) is reset once the spec is loaded (/proc/self/clear_refs), so `peak_growth`
is what running the tests added to the process's memory at its highest. Also printed: the tests'
outcomes and reasons, their event counts per type, monitor calls, and the run's duration."""

from __future__ import annotations

import gc
import json
import sys
import time
from collections import Counter

from faultbox.runner.run import RunOptions, run_spec
from faultbox.spec import load_spec


def status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def main() -> None:
    spec = load_spec(sys.argv[1])
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak to the current RSS
        reset = True
    except OSError:
        reset = False
    rss_before = status("VmRSS")
    hwm_before = status("VmHWM")
    began = time.monotonic()
    result = run_spec(spec, RunOptions(seed=1, timeout=150.0))
    seconds = time.monotonic() - began
    tests = [
        {
            "name": t.name,
            "outcome": t.outcome.value,
            "reason": t.reason,
            "events": dict(Counter(e.type for e in t.events)),
            "longest_raw": max((len(e.fields.get("raw", "")) for e in t.events), default=0),
            "tails": [e.fields.get("raw", "")[-60:] for e in t.events if e.type == "stdout"][-3:],
        }
        for t in result.tests
    ]
    print(
        json.dumps(
            {
                "reset": reset,
                "rss_before": rss_before,
                "hwm_before": hwm_before,
                "hwm_after": status("VmHWM"),
                "rss_after": status("VmRSS"),
                "seconds": seconds,
                "tests": tests,
            }
        )
    )


if __name__ == "__main__":
    main()
