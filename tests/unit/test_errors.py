from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

from faultbox._util.durations import DurationError
from faultbox.deps.base import DependencyMissing, PortInUse
from faultbox.engine.client import SupervisorError
from faultbox.errors import (
    HINTS,
    Code,
    FaultboxError,
    InternalError,
    SourceLocation,
    SpecError,
    SpecFailure,
)
from faultbox.model.result import Diagnostic
from faultbox.runner.select import ShardError
from faultbox.sources import SourceError
from faultbox.spec.args import ArgError


def test_every_code_has_a_hint() -> None:
    assert set(HINTS) == set(Code)
    assert all(h.strip() for h in HINTS.values())


def test_render_points_at_the_column() -> None:
    err = SpecError(
        Code.SPEC_UNDEFINED, "undefined name 'x'", SourceLocation("a.star", 3, 13), None, "        y = x + 1"
    )
    text = err.render()
    assert text.splitlines()[0] == "a.star:3:13: error [SPEC_UNDEFINED]: undefined name 'x'"
    assert text.splitlines()[1] == "    y = x + 1"
    assert text.splitlines()[2] == "        ^"  # under the x, with the line's indentation removed


# Exceptions that never leave the module raising them: signals between two functions, not errors a
# user or a report sees. Anything else faultbox raises is in the tree.
SIGNALS = {
    "faultbox.model.event.FieldMissing": "Starlark's own KeyError for e['x'], reported as spec code's error",
    "faultbox.protocols.kafka._StepFailed": "a step's failure, turned into the step's result",
    "faultbox.protocols.kafka._ReaderBroken": "the group reader restarts on it",
    "faultbox.protocols.postgres._StepFailed": "a step's failure, turned into the step's result",
    "faultbox.proxy.http_frame.Garbled": "the proxy answers 400 and closes",
    "faultbox.proxy.http_frame.Dropped": "the peer hung up",
    "faultbox.proxy.http_h1._Closed": "the peer hung up",
    "faultbox.proxy.kafka_frames.NotKafka": "the proxy relays the connection untouched (PROXY_UNDECODED)",
    "faultbox.proxy.redis._Dropped": "the peer hung up",
    "faultbox.proxy.redis_resp.ProtocolError": "the proxy relays the connection untouched (PROXY_UNDECODED)",
    "faultbox.runner.health.NotReady": "one probe attempt; the healthcheck retries until its deadline",
    "faultbox.pytest_plugin.SpecTestFailed": "a failed item; pytest shows the test's faultbox report",
}
SRC = Path(__file__).resolve().parents[2] / "src" / "faultbox"


def _exception_classes() -> dict[str, type[BaseException]]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "__main__.py":
            continue
        name = ".".join(("faultbox", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == name:
                found[f"{name}.{attr}"] = obj
    return found


def test_one_error_tree() -> None:
    classes = _exception_classes()
    assert len(classes) > 30  # the walk found the package's modules
    outside = {n for n, c in classes.items() if not issubclass(c, (FaultboxError, SpecFailure))}
    assert outside == set(SIGNALS), "raise a FaultboxError subclass (with a code), or list a signal here"


def test_every_error_has_a_code_and_a_fix() -> None:
    for name, cls in _exception_classes().items():
        per_instance = "code" in inspect.signature(cls.__init__).parameters  # SpecError(code, ...)
        if issubclass(cls, FaultboxError) and cls not in (FaultboxError, InternalError) and not per_instance:
            assert cls.code is not Code.INTERNAL, f"{name}: name its code (code = Code.X)"
    assert SupervisorError("gone").code is Code.SUPERVISOR_FAILED
    assert SourceError("lost").code is Code.SOURCE_FAILED
    assert str(SourceError("lost")) == "lost"  # str() is the message alone: it reads well inside another
    assert DependencyMissing("no redis-server", "redis-server").code is Code.DEPENDENCY_MISSING
    assert PortInUse(5432).code is Code.PORT_IN_USE
    assert ArgError("bad").hint == HINTS[Code.SPEC_BAD_ARGUMENT]
    assert isinstance(DurationError("x"), ValueError) and DurationError("x").code is Code.SPEC_BAD_ARGUMENT
    assert ShardError("x").render() == f"error [BAD_OPTION]: x\n  fix: {HINTS[Code.BAD_OPTION]}"


def test_diagnostics_name_a_code_of_the_table() -> None:
    """Every Diagnostic(...) in the package names its code as Code.X.value, so that it has a fix."""
    calls = 0
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Diagnostic":
                calls += 1
                code = node.args[1] if len(node.args) > 1 else None
                assert (
                    isinstance(code, ast.Attribute)
                    and code.attr == "value"
                    and isinstance(code.value, ast.Attribute)
                    and getattr(code.value.value, "id", "") == "Code"
                ), f"{path}:{node.lineno}"
    assert calls >= 4
    warning = Diagnostic("warning", Code.FAULT_NOT_FIRED.value, "fired nothing")
    assert warning.hint == HINTS[Code.FAULT_NOT_FIRED]
    assert Diagnostic.from_dict(warning.to_dict()) == warning
    assert Diagnostic("warning", "SOMETHING_OLD", "from an older file").hint == ""


def test_the_docs_table_is_the_code_table() -> None:
    text = (SRC.parents[1] / "docs" / "errors.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| .* \| (.*) \|$", text, re.MULTILINE))
    assert rows == {c.value: h for c, h in HINTS.items()}
