"""Fixtures: write a spec into a temp dir, load it, run it for real (helpers live in support.py)."""

from __future__ import annotations

import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from faultbox.runner.run import RunOptions, run_spec
from faultbox.spec import load_spec
from support import FIXTURES, SpecRun


@pytest.fixture
def marks() -> Iterator[Path]:
    """A directory outside /tmp: the machine's own, seen alike by every test worker (each of which
    has a /tmp of its own), where services leave marks a test waits on."""
    path = Path(tempfile.mkdtemp(prefix="faultbox-marks-", dir="/var/tmp"))
    yield path
    for f in path.iterdir():
        f.unlink()
    path.rmdir()


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
