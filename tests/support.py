"""Helpers shared by the tests: paths, free ports, the fixture service, process checks, the CLI.

Imported as `support` (a unique module name: test directories are rootless, and several have a
conftest.py of their own)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

from faultbox.model.result import RunResult, TestResult

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


def cmdline(pid: int) -> str:
    """A process's command line as one string ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def process_tree(pid: int) -> list[int]:
    """pid and every descendant it has now."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _state(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1]
    except OSError:
        return ""
    return ""


def run_spec_text(directory: Path, text: str, *, seed: int = 1, timeout: float = 60.0) -> RunResult:
    """Write `text` as directory/spec.star, load it and run every test in it."""
    from faultbox.runner.run import RunOptions, run_spec
    from faultbox.spec import load_spec

    path = directory / "spec.star"
    path.write_text(text)
    return run_spec(load_spec(str(path)), RunOptions(seed=seed, timeout=timeout))


def find_test(result: RunResult, name: str) -> TestResult:
    found = [t for t in result.tests if t.name == name]
    assert found, f"{name} did not run; ran: {[t.name for t in result.tests]}"
    return found[0]


def assert_passed(test: TestResult) -> None:
    assert test.outcome.value == "passed", f"{test.name}: {test.outcome.value}: {test.reason}"


def load_bench(name: str) -> ModuleType:
    """bench/<name>.py as a module, for the smoke tests of its measuring machinery."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def wait_until(cond: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Poll `cond` until it holds; an AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def ours_alive(marker: str, busy: Iterable[int | None] = ()) -> list[int]:
    """The live processes under this one whose command line holds `marker`, but for the `busy` pids
    (readers a running source holds, say)."""
    ours = [p for p in process_tree(os.getpid()) if marker in cmdline(p)]
    return sorted(set(descendants_alive(ours)) - set(busy))
