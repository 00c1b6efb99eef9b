"""PYTEST_DONT_REWRITE

pytest runs faultbox specs: `pytest --faultbox specs/` collects every `.star` file as a module
of tests, one item per test and per matrix cell (`shop.star::test_matrix_create_order_db_down`).

Installing faultbox registers this plugin (the `pytest11` entry point); it collects nothing until
`--faultbox` is given (or `faultbox = true` is set in the ini file), so that a project's other
`.star` files and its Python tests are left as they were.

Each spec is loaded once per session; its tests run one at a time on one runner (SpecRunner), as
`faultbox test` runs them serially, so an item's result is the result `faultbox test` gives. A
failed item shows faultbox's own report of the test (reason, violating event, fault decisions,
replay command), and its seed, cell, faults and outcome go into the JUnit report as properties.
Under pytest-xdist every worker gets the controller's seed and, where namespaces can be made, its
own network and /tmp (the isolation `faultbox test --jobs` gives its workers), so specs with fixed
ports run in several workers without clashing.
"""

from __future__ import annotations

import io
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SHRINK_RUNS = 20  # as `faultbox test` does by default: a failed test gets its smallest failing case


def _leave_faultbox_unrewritten() -> None:
    """pytest rewrites the asserts of every module of a package that installs a plugin, so each of
    faultbox's modules would be recompiled where compiled files are not kept (PYTHONDONTWRITEBYTECODE,
    common in CI images): 0.7 s a session here, for modules that hold no test asserts. Before any of
    them is imported, take the package off the rewriting hook's list. (The hook's attributes are
    pytest's own: where they are not, modules are rewritten as before, only slower.)"""
    for finder in sys.meta_path:
        marked = getattr(finder, "_must_rewrite", None)
        if isinstance(marked, set):
            marked.discard("faultbox")
            cache = getattr(finder, "_marked_for_rewrite_cache", None)
            if isinstance(cache, dict):
                for name in [n for n in cache if n == "faultbox" or n.startswith("faultbox.")]:
                    del cache[name]


_leave_faultbox_unrewritten()

from faultbox._util.durations import DurationError, parse_duration  # noqa: E402 (after the hook's list)
from faultbox.errors import FaultboxError, UsageError  # noqa: E402
from faultbox.model.result import TestResult, Verdict  # noqa: E402

_SEED = pytest.StashKey[int]()
_RUNNERS = pytest.StashKey[dict[Path, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("faultbox", "faultbox specs (.star)")
    group.addoption("--faultbox", action="store_true", help="collect .star files as faultbox specs")
    group.addoption(
        "--faultbox-seed", type=int, metavar="N", help="the run's seed (default: random, shown in the header)"
    )
    group.addoption(
        "--faultbox-var", action="append", default=[], metavar="NAME=VALUE", help="a spec variable, as --var"
    )
    group.addoption("--faultbox-timeout", default="120s", metavar="DURATION", help="per-test deadline (120s)")
    parser.addini("faultbox", type="bool", default=False, help="collect .star files as faultbox specs")


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("faultbox") or config.getini("faultbox"))


def pytest_configure(config: pytest.Config) -> None:
    if not _enabled(config):
        return
    worker = getattr(config, "workerinput", None)
    if worker is not None and "faultbox_seed" in worker:
        config.stash[_SEED] = int(worker["faultbox_seed"])
        if worker.get("faultbox_isolate"):
            _isolate_this_worker()
    else:
        seed = config.getoption("faultbox_seed")
        config.stash[_SEED] = seed if seed is not None else secrets.randbelow(1 << 31)
    config.stash[_RUNNERS] = {}
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistController(config), "faultbox-xdist")


class _XdistController:
    """Hooks that exist only with pytest-xdist: what each worker is handed when it starts."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_configure_node(self, node: Any) -> None:
        from faultbox.engine.isolation import IsolationError, check_available

        node.workerinput["faultbox_seed"] = self.config.stash[_SEED]
        try:
            check_available()
            node.workerinput["faultbox_isolate"] = True
        except IsolationError:
            node.workerinput["faultbox_isolate"] = False  # each worker shares this machine's ports


def _isolate_this_worker() -> None:
    """Give this xdist worker its own loopback and /tmp. Namespaces belong to the thread that makes
    them and to the threads it starts afterwards: xdist runs the tests on this (the main) thread, and
    every faultbox thread and process of the run is started from it."""
    from faultbox.engine.isolation import isolate

    isolate()


def pytest_report_header(config: pytest.Config) -> str | None:
    if not _enabled(config) or hasattr(config, "workerinput"):
        return None
    seed = config.stash[_SEED]
    return f"faultbox: seed {seed} (again with --faultbox-seed {seed})"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".star" and _enabled(parent.config):
        spec: SpecFile = SpecFile.from_parent(parent, path=file_path)
        return spec
    return None


def pytest_unconfigure(config: pytest.Config) -> None:
    for runner in config.stash.get(_RUNNERS, {}).values():
        runner.close()


def _variables(config: pytest.Config) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in config.getoption("faultbox_var"):
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--faultbox-var {pair!r}: write NAME=VALUE")
        out[name] = value
    return out


def _timeout(config: pytest.Config) -> float:
    text = config.getoption("faultbox_timeout")
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise UsageError(f"--faultbox-timeout: {exc}") from None


class SpecFile(pytest.File):
    """A .star file: its tests and matrix cells are the items. A spec that does not load is a
    collection error showing faultbox's message (file:line, code, fix), not a traceback."""

    def collect(self) -> Iterator[pytest.Item]:
        from faultbox.spec import load_spec

        spec = load_spec(str(self.path), _variables(self.config))
        for case in spec.tests:
            item: SpecItem = SpecItem.from_parent(self, name=case.name)
            item.spec = spec
            item.line = case.location.line if case.location else 0
            yield item

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        if isinstance(excinfo.value, FaultboxError):
            return excinfo.value.render()
        return super().repr_failure(excinfo)


class SpecTestFailed(Exception):
    """An item whose faultbox verdict is not a pass; its report is faultbox's own."""

    def __init__(self, result: TestResult) -> None:
        super().__init__(result.reason)
        self.result = result


class SpecItem(pytest.Item):
    spec: Any
    line: int

    def runtest(self) -> None:
        result = self._runner().run_repeated(self.name, 1)
        self._record(result)
        if result.verdict is Verdict.PASS:
            return
        if result.verdict is Verdict.HALTED:
            pytest.skip(result.reason or "halted")
        raise SpecTestFailed(result)

    def _runner(self) -> Any:
        from faultbox.runner.serial import SpecRunner

        runners = self.config.stash[_RUNNERS]
        runner = runners.get(self.path)
        if runner is None:
            spec_arg = os.path.relpath(self.path, self.config.invocation_params.dir)
            runner = SpecRunner(
                self.spec, self.config.stash[_SEED], _timeout(self.config), spec_arg=spec_arg, shrink=_SHRINK_RUNS
            )
            runners[self.path] = runner
        return runner

    def _record(self, result: TestResult) -> None:
        props = self.user_properties
        props.append(("faultbox.outcome", result.outcome.value))
        props.append(("faultbox.seed", str(result.seed)))
        if result.matrix is not None:
            props.append(("faultbox.cell", " × ".join(result.matrix)))
        if result.code:
            props.append(("faultbox.code", result.code))
        fired = [f"{f.service}.{f.keyword}={f.decision} fired {f.fired}/{f.matched}" for f in result.faults]
        if fired:
            props.append(("faultbox.faults", "; ".join(fired)))
        if result.replay:
            props.append(("faultbox.replay", result.replay))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        if isinstance(excinfo.value, SpecTestFailed):
            return _report(excinfo.value.result)
        if isinstance(excinfo.value, FaultboxError):
            return excinfo.value.render()
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, max(self.line - 1, 0), self.name


def _report(result: TestResult) -> str:
    """The console report of one test, as `faultbox test` prints it, without colour."""
    from faultbox.report.console import ConsoleReporter

    out = io.StringIO()
    ConsoleReporter(out, color=False, verbose=True).test_finished(result)
    reason = result.reason.splitlines()[0] if result.reason else ""
    # The first line is what pytest's summary shows: the outcome and why, then faultbox's report.
    return f"{result.outcome.value}: {reason}\n" + out.getvalue().rstrip()


__all__ = ["SpecFile", "SpecItem", "SpecTestFailed"]
