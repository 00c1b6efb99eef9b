"""bench/bench_proxy.py's measurement machinery, with tiny runs: TCP and one other protocol whose codec
imports, the report, a codec that does not import, and a server that stops answering.

No timing thresholds here (these machines are noisy; the benchmark prints its targets): only that every
configuration measured something sane (the right count of positive latencies on both sides, throughput
above zero both ways, traffic seen by the proxy).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import load_bench

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = 40


bench = load_bench("bench_proxy")


def _other() -> tuple[str, bool]:
    """The first protocol besides TCP whose codec imports (fast ones first); else redis through the
    TCP relay, so the machinery of a real client and server is still exercised."""
    for name in ("redis", "http", "postgres", "kafka"):
        if bench.available(name):
            return name, False
    return "redis", True


def _check(result: Any, conns: int) -> None:
    assert not result.skipped, result.skipped
    assert not result.error, result.error
    b = bench.BENCHES[result.protocol]
    assert [lat.label for lat in result.latencies] == [row.label for row in b.rows]
    for lat, row in zip(result.latencies, b.rows, strict=True):
        n = max(5, round(SAMPLES * row.scale))
        assert len(lat.direct) == len(lat.proxied) == n, lat.label
        assert all(0 < x < 10_000_000 for x in lat.direct + lat.proxied), lat.label
    if b.throughput is None:
        assert result.throughput is None
    else:
        t = result.throughput
        assert t.conns == conns
        assert t.direct_ops > 0 and t.proxied_ops > 0
        assert t.direct > 0 and t.proxied > 0 and t.ratio > 0
    # The proxied clients really went through the proxy, which ended cleanly.
    stats = result.proxy
    assert stats["returncode"] == 0, stats
    assert stats["conns"] >= len(b.rows) + (2 * conns if b.throughput else 0)
    assert result.trips > 0 and stats["bytes_c2s"] >= result.wire > 0 and stats["bytes_s2c"] > 0


@pytest.mark.parametrize("name, relay", [("tcp", False), _other()])
def test_measures_direct_and_proxied(name: str, relay: bool, capsys: pytest.CaptureFixture[str]) -> None:
    conns = 4
    (result,) = bench.measure([name], samples=SAMPLES, seconds=0.2, conns=conns, stall=10, tcp_relay=relay)
    _check(result, conns)

    bench.report([result], samples=SAMPLES, seconds=0.2, conns=conns, tcp_relay=relay)
    out = capsys.readouterr().out
    assert "reference: 15–42 µs added" in out
    assert out.count("PASS") + out.count("MISS") + out.count("no target") == len(result.latencies) + (
        result.throughput is not None
    )


def test_a_codec_that_does_not_import_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(bench.CODECS, "redis", "faultbox.proxy.no_such_codec")
    monkeypatch.setattr(bench, "available", lambda protocol: False)
    (result,) = bench.measure(["redis"], samples=SAMPLES, seconds=0)
    assert "faultbox.proxy.no_such_codec does not import" in result.skipped
    assert not result.latencies and result.throughput is None


@pytest.fixture
def silent_server() -> Iterator[tuple[int, Any]]:
    """Accepts connections and never answers; kill() cuts them (what the watchdog calls)."""
    lsock = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            accepted.append(conn)

    threading.Thread(target=accept, daemon=True).start()

    def kill() -> None:
        for conn in accepted:
            conn.close()
        lsock.close()

    yield lsock.getsockname()[1], kill
    kill()


def test_a_hung_round_trip_is_reported_not_waited_for(silent_server: tuple[int, Any], tmp_path: Path) -> None:
    port, kill = silent_server
    hung = bench.Bench(
        "tcp",
        lambda env: bench.Upstream(port, stop=lambda: None, kill=kill),
        (bench.Row("line echo", lambda up, p: bench.LineClient(p), len(bench.LineClient.LINE)),),
    )
    env = bench.Env(str(tmp_path))
    result = bench.run_bench(hung, env, samples=SAMPLES, seconds=0, stall=1.0)
    assert "a round trip direct got no reply for 1 s (the server killed)" in result.error
    assert result.proxy["returncode"] == 0
