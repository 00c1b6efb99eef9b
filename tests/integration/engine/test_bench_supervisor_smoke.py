"""bench/bench_supervisor.py's measurement machinery, with tiny runs.

No timing thresholds here (these machines are noisy; the benchmark prints its targets): only that every
configuration measures something, that the C supervisor answered every call, that a deny produced
exactly one error per call, that faultbox emitted one event per call and a delay never came back early.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faultbox.model.fault import Action, ActionKind
from support import load_bench

ROOT = Path(__file__).resolve().parents[3]
CALLS = 300
WARMUP = 20

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not (shutil.which("cc") or shutil.which("gcc")),
    reason="needs Linux and a C compiler",
)


bench = load_bench("bench_supervisor")


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return bench.build_tools(tmp_path_factory.mktemp("bench-supervisor"))


@pytest.fixture(scope="module")
def fbx(tools: Any) -> Iterator[Any]:
    with bench.faultbox_bench(tools) as b:
        yield b
    assert b.dead is None


def _check_sample(sample: Any, calls: int = CALLS) -> None:
    assert sample.calls == calls
    assert len(sample.lat_ns) == calls
    assert all(v > 0 for v in sample.lat_ns)
    assert sample.total_ns > 0
    assert sample.end_ns > sample.start_ns


@pytest.mark.parametrize("syscall", bench.SYSCALLS)
def test_unsupervised_measures_every_call(tools: Any, syscall: str) -> None:
    sample = bench.run_unsupervised(tools, syscall, CALLS, WARMUP)
    _check_sample(sample)
    assert sample.eio == 0
    # fsync on a pipe fails with EINVAL by design (a cheap call that does no I/O); getppid never fails
    assert sample.other_errors == (CALLS if syscall == "fsync" else 0)


@pytest.mark.parametrize("loop", ["block", "poll"])
@pytest.mark.parametrize("syscall", bench.SYSCALLS)
def test_c_supervisor_answers_every_call(tools: Any, syscall: str, loop: str) -> None:
    sample = bench.run_c(tools, syscall, CALLS, WARMUP, 0, loop)
    _check_sample(sample)
    assert sample.answered == CALLS + WARMUP
    assert sample.eio == 0


@pytest.mark.parametrize("syscall", bench.SYSCALLS)
def test_c_supervisor_deny_fails_exactly_every_call(tools: Any, syscall: str) -> None:
    sample = bench.run_c(tools, syscall, CALLS, WARMUP, bench.EIO)
    _check_sample(sample)
    assert sample.answered == CALLS + WARMUP
    assert (sample.eio, sample.warm_eio, sample.other_errors) == (CALLS, WARMUP, 0)


@pytest.mark.parametrize("syscall", bench.SYSCALLS)
def test_faultbox_continue_and_allow_emit_one_event_per_call(fbx: Any, syscall: str) -> None:
    for action in (None, Action(ActionKind.ALLOW)):
        (sample,) = fbx.run(syscall, CALLS, WARMUP, action)
        _check_sample(sample)
        assert sample.eio == 0
        assert sample.events == CALLS + WARMUP
        assert sample.drained_ns >= sample.end_ns > sample.start_ns >= sample.go_ns
        assert sample.reader_cpu_s > 0


@pytest.mark.parametrize("syscall", bench.SYSCALLS)
def test_faultbox_deny_fails_exactly_every_call(fbx: Any, syscall: str) -> None:
    (sample,) = fbx.run(syscall, CALLS, WARMUP, Action(ActionKind.DENY, errno="EIO"))
    _check_sample(sample)
    assert (sample.eio, sample.warm_eio, sample.other_errors) == (CALLS, WARMUP, 0)
    assert sample.events == CALLS + WARMUP


def test_faultbox_delay_never_returns_early_and_runs_concurrently(fbx: Any) -> None:
    calls, delay = 20, Action(ActionKind.DELAY, delay=0.001)
    samples = fbx.run("getppid", calls, 2, delay, procs=2)
    assert len(samples) == 2
    for sample in samples:
        _check_sample(sample, calls)
        # a lower bound, not a timing threshold: the supervisor holds each call at least the delay
        assert min(sample.lat_ns) >= 1_000_000
        assert len(sample.lateness_ms) == calls + 2  # one delay event per call, with its lateness
        assert all(ms >= 0 for ms in sample.lateness_ms)


def test_c_floor_delay_answers_every_call_never_early(tools: Any) -> None:
    sample = bench.run_c(tools, "getppid", 20, 2, 0, "delay:1000")
    _check_sample(sample, 20)
    assert sample.answered == 22
    assert min(sample.lat_ns) >= 1_000_000  # a lower bound, not a timing threshold
    # each timed call's RECV and SEND times: the split of the floor's excess, all in order
    assert len(sample.answer_ns) == len(sample.lateness_ms) == 20
    assert all(sent - recv >= 1_000_000 for recv, sent in sample.answer_ns)
    way_in, late, way_out = bench.floor_split([sample], 0.001)
    assert len(way_in) == len(late) == len(way_out) == 20
    assert min(way_in) > 0 and min(late) >= 0 and min(way_out) > 0


def test_summary_and_table_from_tiny_runs(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--calls", "200", "--warmup", "10", "--reps", "1", "--delay-calls", "10", "--delay-reps", "1"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    expected = (
        "unsupervised",
        "C, CONTINUE (blocking RECV)",
        "faultbox, deny EIO",
        "target ≤ 2×",
        "target < 15 µs",
        "Delay 1 ms",
        "a delay never blocks other notifications",
        "C floor",
        "target ≤ 10 µs",
    )
    for text in expected:
        assert text in out
    # 2 syscalls x 3 pairs x 2 targets, delay concurrency and accuracy
    assert out.count("PASS") + out.count("MISS") >= 2 * 3 * 2 + 2
