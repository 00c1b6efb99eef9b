"""The spec language: Starlark source -> checked, compiled modules -> model objects.

This package knows nothing of processes or time; while a test runs it reaches the runner only
through `spec.host.Host`.
"""

from __future__ import annotations

from collections.abc import Mapping

from faultbox.errors import Code, SpecError, UsageError
from faultbox.model.service import DependencyCycle, start_order
from faultbox.spec.filterset import plan_filters
from faultbox.spec.loader import Loader
from faultbox.spec.registry import Spec, SpecBuilder, discover


def load_spec(path: str, variables: Mapping[str, str] | None = None) -> Spec:
    """Load, run and check a spec file. Raises SpecError for anything wrong with it.
    `variables` are what var() returns (`faultbox test --var NAME=VALUE`)."""
    builder = SpecBuilder(path, dict(variables or {}))
    loader = Loader(builder)
    root = loader.load_root(path)
    _check_dependencies(builder)
    spec_wide = [m for m in builder.spec_monitors if id(m) not in builder.claimed]
    return Spec(
        path=root.path,
        root=root,
        modules=loader.modules,
        services=builder.services,
        tests=discover(builder, root),
        assumptions=builder.assumptions,
        matrices=builder.matrices,
        spec_monitors=spec_wide,
        syscalls=plan_filters(loader.modules.values(), builder.services, builder.assumptions.values()),
        variables=builder.variables,
        data_files=builder.data_files,
    )


def _check_dependencies(builder: SpecBuilder) -> None:
    try:
        start_order(builder.services.values())
    except DependencyCycle as cycle:
        first = builder.services[cycle.cycle[0]]
        raise SpecError(
            Code.SPEC_DEPENDENCY_CYCLE,
            f"depends_on forms a cycle: {' -> '.join(cycle.cycle)}",
            first.location,
        ) from None
    except KeyError as missing:
        dependents = [s for s in builder.services.values() if missing.args[0] in s.depends_on]
        where = dependents[0].location if dependents else None
        raise SpecError(
            Code.SPEC_BAD_ARGUMENT,
            f'depends_on names "{missing.args[0]}", which is not a declared service',
            where,
            hint=f"declared services: {', '.join(builder.services) or 'none'}",
        ) from None


class NoTestsDiscovered(UsageError):
    """A spec with nothing to run: `faultbox test` refuses it, and `faultbox check` reports it."""

    code = Code.NO_TESTS_DISCOVERED

    def __init__(self, path: str) -> None:
        super().__init__(f"{path} defines no tests")


__all__ = ["NoTestsDiscovered", "Spec", "SpecError", "load_spec"]
