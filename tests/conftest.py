"""Shared fixtures: write a spec into a temp dir, load it, run it for real, look at the result."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from faultbox.model.result import RunResult, TestResult
from faultbox.runner.run import RunOptions, run_spec
from faultbox.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
EXAMPLES = ROOT / "examples"


class SpecRun:
    """The result of running a spec, with helpers that explain failures."""

    def __init__(self, result: RunResult) -> None:
        self.result = result

    def test(self, name: str) -> TestResult:
        full = name if name.startswith("test_") else f"test_{name}"
        for t in self.result.tests:
            if t.name == full:
                return t
        raise KeyError(f"{full} not in {[t.name for t in self.result.tests]}")

    def outcome(self, name: str) -> str:
        return self.test(name).outcome.value

    def explain(self) -> str:
        return "\n".join(f"{t.name}: {t.outcome.value} {t.reason}" for t in self.result.tests)


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "spec.star", **files: str) -> Path:
        for fname, content in files.items():
            (tmp_path / fname.replace("__", ".")).write_text(textwrap.dedent(content))
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).replace("@FIXTURES@", str(FIXTURES)).replace("@PYTHON@", sys.executable))
        return path

    return write


@pytest.fixture
def run(write_spec: Callable[..., Path]) -> Callable[..., SpecRun]:
    """run(spec_text, test=None, seed=1, timeout=60) -> SpecRun."""

    def go(text: str, *, test: str | None = None, seed: int = 1, timeout: float = 60.0, **files: str) -> SpecRun:
        path = write_spec(text, **files)
        spec = load_spec(str(path))
        return SpecRun(run_spec(spec, RunOptions(seed=seed, test=test, timeout=timeout)))

    return go


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def svc_decl(name: str, port: int, extra: str = "", env: str = "") -> str:
    """A spec line declaring the fixture service (tests/fixtures/svc.py) on a port."""
    return (
        f'{name} = service("{name}", "@PYTHON@", interface("main", "tcp", {port}), args = ["@FIXTURES@/svc.py"], '
        f'env = {{"PORT": "{port}"{", " + env if env else ""}}}, healthcheck = tcp("127.0.0.1:{port}"){extra})\n'
    )


def faultbox_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "faultbox", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def descendants_alive(pids: list[int]) -> list[int]:
    return [p for p in pids if Path(f"/proc/{p}").exists() and _state(p) != "Z"]


def _state(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1]
    except OSError:
        return ""
    return ""
