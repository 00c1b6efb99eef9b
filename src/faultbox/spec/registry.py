"""What a spec declares while it loads (SpecBuilder), and the finished, checked result (Spec)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from faultbox.errors import Code, SourceLocation, SpecError
from faultbox.model.monitor import Monitor
from faultbox.model.scenario import FaultAssumption, FaultMatrix, FaultScenario, TestCase, callable_name
from faultbox.model.service import Service
from faultbox.model.temporal import TemporalTest
from faultbox.spec.args import ArgError, check_arity
from faultbox.spec.compile import Module


@dataclass
class SpecBuilder:
    """Collects declarations from every module of one spec (the root and what it loads)."""

    spec_path: str
    variables: dict[str, str] = field(default_factory=dict)  # faultbox test --var NAME=VALUE
    services: dict[str, Service] = field(default_factory=dict)
    scenarios: dict[str, Callable[[], Any]] = field(default_factory=dict)
    assumptions: dict[str, FaultAssumption] = field(default_factory=dict)
    fault_scenarios: dict[str, FaultScenario] = field(default_factory=dict)
    matrices: list[FaultMatrix] = field(default_factory=list)
    spec_monitors: list[Monitor] = field(default_factory=list)
    claimed: set[int] = field(default_factory=set)  # ids of monitors attached via monitors=
    # Files the spec read with load_file/load_json/load_yaml/openapi= (absolute paths, in the order
    # read; a file read twice is listed twice): a failure bundle carries them.
    data_files: list[str] = field(default_factory=list)
    declared: dict[str, TemporalTest] = field(default_factory=dict)  # test(): by test_<name>

    def add_service(self, svc: Service) -> None:
        _add_unique(self.services, svc.name, svc, f'service "{svc.name}"')

    def add_scenario(self, fn: Callable[[], Any]) -> None:
        self.scenarios.setdefault(callable_name(fn), fn)

    def add_assumption(self, fa: FaultAssumption) -> None:
        _add_unique(self.assumptions, fa.name, fa, f'a fault_assumption named "{fa.name}"')

    def add_fault_scenario(self, fs: FaultScenario) -> None:
        _add_unique(self.fault_scenarios, fs.name, fs, f'a fault scenario named "{fs.name}"')

    def add_declared(self, t: TemporalTest) -> None:
        _add_unique(self.declared, t.name, t, f'a test named "{t.name.removeprefix("test_")}"')

    def claim_monitors(self, monitors: tuple[Monitor, ...]) -> None:
        """Monitors attached through monitors= run only where attached (DECISIONS §7)."""
        for m in monitors:
            self.claimed.add(id(m))


def _add_unique(table: dict[str, Any], name: str, value: Any, what: str) -> None:
    if name in table:
        prev = getattr(table[name], "location", None)
        raise ArgError(f"{what} is already declared" + (f" (at {prev})" if prev else ""), "give each a distinct name")
    table[name] = value


@dataclass
class Spec:
    """A loaded, checked spec: ready to run."""

    path: str
    root: Module
    modules: dict[str, Module]
    services: dict[str, Service]
    tests: list[TestCase]
    assumptions: dict[str, FaultAssumption]
    matrices: list[FaultMatrix]
    spec_monitors: list[Monitor]
    syscalls: dict[str, frozenset[str]]  # service -> syscalls its filter intercepts
    variables: dict[str, str] = field(default_factory=dict)
    data_files: list[str] = field(default_factory=list)  # SpecBuilder.data_files: the same list

    def test(self, name: str) -> TestCase | None:
        for t in self.tests:
            if t.name == name:
                return t
        return None


def _takes_no_arguments(fn: Callable[..., Any], name: str, location: SourceLocation) -> None:
    try:
        check_arity(fn, 0, name, "no arguments (the runner calls a test with none)")
    except ArgError as exc:
        raise SpecError(Code.SPEC_BAD_ARGUMENT, str(exc), location, exc.hint) from None


def discover(builder: SpecBuilder, root: Module) -> list[TestCase]:
    """Tests in name order: `def test_*` in the root module, scenario() functions, fault scenarios
    and matrix cells, test() declarations. An earlier source wins a name collision, except over a
    test(): that is an error at the test()'s line."""
    found: dict[str, TestCase] = {}
    for name, value in root.globals.items():
        if name.startswith("test_") and callable(value) and name in root.checked.top_level:
            line = root.checked.top_level[name]
            _takes_no_arguments(value, name, SourceLocation(root.path, line))
            found[name] = TestCase(name, body=value, location=SourceLocation(root.path, line))
    for name, fn in builder.scenarios.items():
        test_name = f"test_{name}"
        if test_name not in found:
            code = getattr(fn, "__code__", None)
            loc = SourceLocation(code.co_filename, code.co_firstlineno) if code else None
            found[test_name] = TestCase(test_name, body=fn, location=loc, probe=True)
    for fs in builder.fault_scenarios.values():
        if fs.test_name not in found:
            found[fs.test_name] = TestCase(fs.test_name, fault_scenario=fs, location=fs.location)
    for t in builder.declared.values():
        if t.name in found:
            other = found[t.name].location
            raise SpecError(
                Code.SPEC_BAD_ARGUMENT,
                f"test(): {t.name} is already a test" + (f" (at {other})" if other else ""),
                t.location,
                "give the test() another name",
            )
        found[t.name] = TestCase(t.name, location=t.location, temporal=t)
    return [found[k] for k in sorted(found)]
