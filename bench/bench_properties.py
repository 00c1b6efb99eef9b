"""The cost of temporal properties (eventually/always) per event, checked as the trace grows.

    .venv/bin/python bench/bench_properties.py [N]

N events (default 100,000) of 20 types from 4 services are appended to a real TraceLog: with no
properties, then with 10 `always`, 10 `eventually` over the trace, and 10 `eventually(matcher)`
attached. The properties are real spec code, compiled from a .star file like any spec, and never
settle, so each is followed to the end. Each run is repeated; the median is kept. Target: at most
2 µs per event per property, over the bare append.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from faultbox.model.event import Event
from faultbox.model.temporal import Property
from faultbox.spec import load_spec
from faultbox.spec.builtins.temporal import TraceView
from faultbox.spec.compile import describe_exception
from faultbox.trace.log import TraceLog
from faultbox.trace.properties import PropertySet

N_PROPS = 10
TYPES = [f"t{i}" for i in range(20)]
SERVICES = ["api", "db", "queue", "cache"]
REPEATS = 5

SPEC = "\n".join(
    [
        "def body():",
        "    pass",
        # A count over one type and service: re-run only when such an event arrives.
        "ALWAYS = [always(lambda t, i=i: t.count(type='t%d' % i, service='api') < 1000000000) for i in range(10)]",
        # Still pending at the end: a count that never gets there.
        "EVENTUALLY = [eventually(lambda t, i=i: t.count(type='t%d' % i) > 1000000000) for i in range(10)]",
        "MATCHERS = [eventually(match.event(type='never%d' % i)) for i in range(10)]",
        "test('always', body=body, expect=ALWAYS)",
        "test('eventually', body=body, expect=EVENTUALLY)",
        "test('matchers', body=body, expect=MATCHERS)",
    ]
)


def _events(n: int) -> list[Event]:
    return [
        Event(TYPES[i % len(TYPES)], SERVICES[(i // 3) % len(SERVICES)], {"n": str(i)}, ts=float(i)) for i in range(n)
    ]


def _run(props: tuple[Property, ...], n: int) -> float:
    """Seconds to append n fresh events with these properties attached."""
    log = TraceLog()
    if props:
        pset = PropertySet(log, TraceView, describe_exception)
        for p in props:
            pset.add(p)
        pset.signal("body_start")
    events = _events(n)
    started = time.perf_counter()
    for ev in events:
        log.append(ev)
    elapsed = time.perf_counter() - started
    if props:
        assert all(st.status == "pending" for st in pset.states), "the properties must stay followed"
    return elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "props.star"
        path.write_text(SPEC)
        spec = load_spec(str(path))
    sets: dict[str, tuple[Property, ...]] = {"none": ()}
    for name in ("always", "eventually", "matchers"):
        case = spec.test(f"test_{name}")
        assert case is not None and case.temporal is not None
        sets[name] = case.temporal.expect
    times: dict[str, list[float]] = {k: [] for k in sets}
    for _ in range(REPEATS):  # interleaved, so that a slow moment of the machine hits every set alike
        for name, props in sets.items():
            times[name].append(_run(props, n))
    base = statistics.median(times["none"])
    print(f"{n:,} events, {N_PROPS} properties per set, median of {REPEATS} runs")
    print(f"{'set':<32}{'µs/event':>10}{'µs/event/property':>20}")
    print(f"{'no properties':<32}{base / n * 1e6:>10.2f}{'-':>20}")
    labels = {
        "always": "10 always(count(type, service))",
        "eventually": "10 eventually(count(type))",
        "matchers": "10 eventually(match.event)",
    }
    for name, label in labels.items():
        t = statistics.median(times[name])
        per_prop = (t - base) / n / N_PROPS * 1e6
        print(f"{label:<32}{t / n * 1e6:>10.2f}{per_prop:>20.2f}")


if __name__ == "__main__":
    main()
