"""bench/bench_mock.py's measuring machinery, with a tiny run: both servers on both routes, the report,
and every process it started ended (also when a window fails), this process's CPUs given back.

No timing thresholds here (these machines are noisy; the benchmark prints its target): only that every
row measured something sane (correct responses at a rate above zero, a latency for each).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from support import descendants_alive, load_bench

bench = load_bench("bench_mock")


def _children() -> set[int]:
    """Live (not zombie) children of this process."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if stat[0] != "Z" and int(stat[1]) == os.getpid():
            found.add(int(entry.name))
    return found


def test_measures_the_mock_and_the_stdlib_server_on_both_routes(capsys: pytest.CaptureFixture[str]) -> None:
    cpus = os.sched_getaffinity(0)
    result = bench.measure(seconds=0.2, conns=2, windows=2)

    assert os.sched_getaffinity(0) == cpus
    assert not descendants_alive(list(result.pids.values()))
    assert result.mismatch == {}
    for server in ("mock", "stdlib"):
        for route in ("static", "dynamic"):
            row = result.row(server, route)
            assert len(row.windows) == 2
            assert not row.errors, (server, route, row.errors, row.first_error)
            assert row.ops > 0 and row.rate > 0
            assert sum(len(w.latencies) for w in row.windows) == row.ops
            assert 0 < row.latency_us(0.5) <= row.latency_us(0.99)
    assert result.mock_events == result.mock_answered > 0

    bench.report(result)
    out = capsys.readouterr().out
    lines = out.splitlines()
    for route in bench.ROUTES.values():
        at = lines.index(route.label)
        for server, line in zip(bench.SERVERS, lines[at + 1 : at + 3], strict=True):
            assert line.strip().startswith(bench.SERVER_LABELS[server]), line
            rate = line.strip()[len(bench.SERVER_LABELS[server]) :].split()[0]
            assert float(rate.replace(",", "")) > 0, line
    assert out.count("PASS") + out.count("MISS") == 1
    assert "mock/stdlib" in out and "no target" in out


def test_every_process_ends_when_a_window_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    before, cpus = _children(), os.sched_getaffinity(0)
    calls = 0
    window = bench.LoadGen.window

    def failing(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt  # as Ctrl-C would, in the middle of the measurement
        return window(self, *args, **kwargs)

    monkeypatch.setattr(bench.LoadGen, "window", failing)
    with pytest.raises(KeyboardInterrupt):
        bench.measure(seconds=0.2, conns=2, windows=2)
    assert _children() == before
    assert os.sched_getaffinity(0) == cpus
