"""One spec's tests run one at a time in this process, on one RunContext (supervisor, proxy worker,
reaper started once and shared by the tests, each test with fresh services).

The serial path of `faultbox test` and the pytest plugin's items both run tests through this, so a
test's result does not depend on which of them ran it."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType

from faultbox.errors import Code, UsageError
from faultbox.model.result import TestResult
from faultbox.runner.cell import run_test
from faultbox.runner.context import RunContext
from faultbox.spec import Spec


class UnknownTest(UsageError):
    code = Code.NO_TEST_MATCHED


class SpecRunner:
    def __init__(
        self, spec: Spec, seed: int, timeout: float, *, spec_arg: str = "", keep_workdir: bool = False
    ) -> None:
        self.spec = spec
        self.seed = seed
        self.timeout = timeout
        self.spec_arg = spec_arg or spec.path
        self._keep_workdir = keep_workdir
        self._ctx: RunContext | None = None  # made at the first test: collecting costs nothing

    def run(self, name: str) -> TestResult:
        case = self.spec.test(name)
        if case is None:
            raise UnknownTest(f"no test named {name} in {self.spec_arg}")
        if self._ctx is None:
            self._ctx = RunContext(self.spec, self.seed, keep_workdir=self._keep_workdir)
        replay = replay_command(self.spec_arg, name, self.seed, self.spec.variables)
        return run_test(self._ctx, case, self.timeout, replay)

    def close(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.close()

    def __enter__(self) -> SpecRunner:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def replay_command(spec_arg: str, name: str, seed: int, variables: Mapping[str, str]) -> str:
    extra = "".join(f" --var {k}={v}" for k, v in sorted(variables.items()))
    return f"faultbox test {spec_arg} --test {name} --seed {seed}{extra}"
