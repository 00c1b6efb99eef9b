"""The runner's own cost, and compiled spec code against plain Python (issue: spec runtime).

    .venv/bin/python bench/bench_runner.py

1. Per-test overhead: a spec whose service (a tiny C TCP server built here, ready in about a
   millisecond) starts, passes its healthcheck and stops in every test. The same cycle done by hand
   (fork/exec, connect until it answers, SIGTERM, wait) is the service's own cost; the difference is
   the runner's. Target: <= 50 ms per test.
2. A monitor function compiled from a .star file, called on 200,000 events, against the same
   function written in plain Python. Target: <= 1.5x.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from faultbox.model.event import Event
from faultbox.runner.run import RunOptions, run_spec
from faultbox.spec import load_spec

SERVER_C = r"""
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a; memset(&a, 0, sizeof a);
    a.sin_family = AF_INET; a.sin_port = htons(atoi(argv[1])); a.sin_addr.s_addr = htonl(0x7f000001);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 16)) return 1;
    for (;;) { int c = accept(s, 0, 0); if (c >= 0) close(c); }
}
"""

MONITOR_STAR = """
def confirmed_means_persisted(event):
    if (event["type"] == "stdout" and event["service"] == "api"
            and event.get("status") == "confirmed"
            and event.get("persisted") != "true"):
        fail("order confirmed but not persisted!")
"""


def confirmed_means_persisted(event: Event) -> None:  # the same logic, as plain Python
    if (
        event["type"] == "stdout"
        and event["service"] == "api"
        and event.get("status") == "confirmed"
        and event.get("persisted") != "true"
    ):
        raise AssertionError("order confirmed but not persisted!")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def by_hand(binary: str, port: int, n: int) -> float:
    """Seconds per start/ready/stop cycle of the bare server."""
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        proc = subprocess.Popen([binary, str(port)])
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.0005)
        proc.terminate()
        proc.wait()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def through_runner(binary: str, port: int, tests: int, services: int, tmp: Path) -> float:
    """Wall seconds per test (whole run / tests) of a spec whose tests only start their services."""
    lines = []
    ports = [port] + [free_port() for _ in range(services - 1)]
    for i, p in enumerate(ports):
        lines.append(
            f's{i} = service("s{i}", "{binary}", interface("main", "tcp", {p}), args = ["{p}"], '
            f'healthcheck = tcp("127.0.0.1:{p}"))'
        )
    for t in range(tests):
        lines.append(f"def test_{t:03d}():\n    pass")
    spec_path = tmp / f"overhead{services}.star"
    spec_path.write_text("\n".join(lines) + "\n")
    spec = load_spec(str(spec_path))
    started = time.perf_counter()
    result = run_spec(spec, RunOptions(seed=1))
    wall = time.perf_counter() - started
    assert all(t.verdict.value == "pass" for t in result.tests), [t.reason for t in result.tests]
    # Wall time per test, so that everything the runner does between tests counts too.
    return wall / tests


def per_event(fn: object, events: list[Event]) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for e in events:
            fn(e)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best / len(events)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        binary = str(tmp / "ready-server")
        (tmp / "s.c").write_text(SERVER_C)
        subprocess.run(["cc", "-O2", "-o", binary, str(tmp / "s.c")], check=True)
        port = free_port()
        bare = by_hand(binary, port, 30)
        one = through_runner(binary, port, 30, 1, tmp)
        three = through_runner(binary, port, 20, 3, tmp)
        (tmp / "m.star").write_text(MONITOR_STAR)
        compiled = load_spec(str(tmp / "m.star")).root.globals["confirmed_means_persisted"]
    events = [
        Event("stdout", "api", {"status": "confirmed", "persisted": "true", "order_id": str(i)})
        if i % 2
        else Event("syscall", "db", {"syscall": "write", "decision": "allow"})
        for i in range(200_000)
    ]
    spec_cost = per_event(compiled, events)
    py_cost = per_event(confirmed_means_persisted, events)
    overhead1 = (one - bare) * 1000
    overhead3 = (three - 3 * bare) * 1000
    print("runner overhead per test (wall time of the whole run / tests; bare cycle: median)")
    print(f"  bare server start, ready, stop by hand        {bare * 1000:8.2f} ms")
    print(f"  one service through the runner                {one * 1000:8.2f} ms")
    print(
        f"  runner overhead, one service                  {overhead1:8.2f} ms   target <= 50 ms  "
        f"{'PASS' if overhead1 <= 50 else 'MISS'}"
    )
    print(f"  three services through the runner             {three * 1000:8.2f} ms")
    print(f"  runner overhead, three services               {overhead3:8.2f} ms")
    print("monitor function per event (best of 5, 200,000 events)")
    print(f"  plain Python                                  {py_cost * 1e9:8.1f} ns")
    print(f"  compiled from a .star spec                    {spec_cost * 1e9:8.1f} ns")
    ratio = spec_cost / py_cost
    print(
        f"  ratio                                         {ratio:8.2f} x    target <= 1.5x  "
        f"{'PASS' if ratio <= 1.5 else 'MISS'}"
    )


if __name__ == "__main__":
    main()
