"""The error tree of faultbox.

    FaultboxError                    root of everything faultbox raises on purpose: a code, a fix
    ├── SpecError                    the spec is wrong: a stable code, a location, a fix hint
    │   (ArgError, DurationError, RouteError, ... carry the code; the builtin adds the location)
    ├── InfraError                   the machine or a dependency broke (not the user's spec):
    │                                SupervisorError, LaunchError, SourceError, DependencyError, ...
    ├── UsageError                   the command line, or a file named on it, is wrong
    └── InternalError                a bug in faultbox itself

    SpecFailure(BaseException)       raised by fail() and assert_* inside spec code
    ├── MonitorStop                  a monitor was violated: the scenario must stop
    ├── Halted                       halt(): the test's premise did not hold
    └── TestTimeout                  the test's deadline passed

SpecFailure derives from BaseException on purpose: spec code is Python underneath, and a failure
must travel through any library code on the way up without being swallowed by `except Exception`.
User mistakes are reported as text with a location; a traceback is never shown for them.

Every error and every diagnostic a report shows has a code in `Code` and a fix in `HINTS`
(docs/errors.md is the same table, and tests keep the three in step). Exceptions that never leave
the module raising them (a proxy's "the peer hung up", a probe's "not ready yet") are signals, not
errors, and stay outside the tree; tests/unit/test_errors.py lists them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Code(enum.Enum):
    """Stable error codes. Each one has a hint in HINTS (a test checks that)."""

    SPEC_SYNTAX = "SPEC_SYNTAX"
    SPEC_NOT_STARLARK = "SPEC_NOT_STARLARK"
    SPEC_UNDEFINED = "SPEC_UNDEFINED"
    SPEC_LOAD_FAILED = "SPEC_LOAD_FAILED"
    SPEC_BAD_ARGUMENT = "SPEC_BAD_ARGUMENT"
    SPEC_DEPENDENCY_CYCLE = "SPEC_DEPENDENCY_CYCLE"
    SPEC_NOT_FOUND = "SPEC_NOT_FOUND"
    SPEC_FROZEN = "SPEC_FROZEN"
    NO_TEST_MATCHED = "NO_TEST_MATCHED"
    LAUNCH_FAILED = "LAUNCH_FAILED"
    PORT_IN_USE = "PORT_IN_USE"
    HEALTHCHECK_TIMEOUT = "HEALTHCHECK_TIMEOUT"
    SERVICE_EXITED = "SERVICE_EXITED"
    FAULT_NOT_FILTERABLE = "FAULT_NOT_FILTERABLE"
    DEPENDENCY_MISSING = "DEPENDENCY_MISSING"
    SUPERVISOR_FAILED = "SUPERVISOR_FAILED"
    PROXY_FAILED = "PROXY_FAILED"
    IMAGE_UNSUPPORTED = "IMAGE_UNSUPPORTED"
    SOURCE_FAILED = "SOURCE_FAILED"
    WORKER_DIED = "WORKER_DIED"
    ISOLATION_UNAVAILABLE = "ISOLATION_UNAVAILABLE"
    SHIM_BUILD_FAILED = "SHIM_BUILD_FAILED"
    NO_TESTS_DISCOVERED = "NO_TESTS_DISCOVERED"
    BAD_OPTION = "BAD_OPTION"
    RESULTS_UNREADABLE = "RESULTS_UNREADABLE"
    MERGE_REFUSED = "MERGE_REFUSED"
    NO_LAST_SEED = "NO_LAST_SEED"
    BUNDLE_UNREADABLE = "BUNDLE_UNREADABLE"
    BUNDLE_VERSION = "BUNDLE_VERSION"
    BUNDLE_SPEC = "BUNDLE_SPEC"
    INTERNAL = "INTERNAL"
    # Diagnostics: attached to a test's result, they do not change its outcome.
    FAULT_NOT_FIRED = "FAULT_NOT_FIRED"
    SOURCE_LAGGED = "SOURCE_LAGGED"
    TEST_NO_ASSERTIONS = "TEST_NO_ASSERTIONS"
    PROXY_UNDECODED = "PROXY_UNDECODED"
    # Static warnings (faultbox check, faultbox plan): something the spec asks for can never happen.
    MONITOR_NEVER_MATCHES = "MONITOR_NEVER_MATCHES"
    # Notes (faultbox check): the spec meets a deliberate difference from the reference.
    DIFFERS_FROM_REFERENCE = "DIFFERS_FROM_REFERENCE"


HINTS: dict[Code, str] = {
    Code.SPEC_SYNTAX: "fix the syntax at the marked position; specs are Starlark (a subset of Python syntax)",
    Code.SPEC_NOT_STARLARK: "rewrite the construct with Starlark features only (see docs/spec-language.md)",
    Code.SPEC_UNDEFINED: "define the name before use, load() it from another file, or fix its spelling",
    Code.SPEC_LOAD_FAILED: "the spec raised while loading; fix the statement at the marked line",
    Code.SPEC_BAD_ARGUMENT: "check the builtin's arguments in docs/spec-language.md",
    Code.SPEC_DEPENDENCY_CYCLE: "remove one depends_on edge so that services can start in order",
    Code.SPEC_NOT_FOUND: "check the path; relative load() paths resolve against the loading file's directory",
    Code.SPEC_FROZEN: "top-level values are frozen after loading; build a new value inside the function",
    Code.NO_TEST_MATCHED: "pass an exact test name, a glob such as 'matrix_*', or omit --test",
    Code.LAUNCH_FAILED: "check the service's binary path, args and cwd",
    Code.PORT_IN_USE: "stop the process holding the port, or give the interface another port",
    Code.HEALTHCHECK_TIMEOUT: "make sure the healthcheck address matches what the service listens on, "
    "or raise the healthcheck timeout",
    Code.SERVICE_EXITED: "read the service's last stderr lines above; it crashed while starting",
    Code.FAULT_NOT_FILTERABLE: "name the syscall as a literal keyword in a fault()/fault_assumption() call "
    "so the service starts with it in its filter",
    Code.DEPENDENCY_MISSING: "run ./scripts/setup to install the servers faultbox starts",
    Code.SUPERVISOR_FAILED: "this is a bug or a resource problem; rerun with the same --seed and report it",
    Code.PROXY_FAILED: "this is a bug or a resource problem; rerun with the same --seed and report it",
    Code.IMAGE_UNSUPPORTED: "there is no container engine here; use the local server helpers "
    "from @faultbox/services.star",
    Code.SOURCE_FAILED: "the event source of a server (wal, topic) failed: read the reason; "
    "if the server itself crashed, its stderr is in the trace",
    Code.WORKER_DIED: "the test's worker process was killed (out of memory? a signal?); rerun the test "
    "with the replay command, with --jobs 1 to run it in the runner itself",
    Code.ISOLATION_UNAVAILABLE: "parallel tests need network and mount namespaces: run as root (or with "
    "CAP_SYS_ADMIN), or pass --jobs 1",
    Code.SHIM_BUILD_FAILED: "install a C compiler and the Python headers (apt-get install gcc python3-dev), "
    "then run ./scripts/setup again",
    Code.NO_TESTS_DISCOVERED: "write a function named test_..., or declare scenario(), fault_scenario() or "
    "fault_matrix()",
    Code.BAD_OPTION: "see faultbox COMMAND --help for the option's form",
    Code.RESULTS_UNREADABLE: "name a file written by faultbox test --output (or --format json), or "
    "--normalize for faultbox diff",
    Code.MERGE_REFUSED: "merge the results of every shard of one run: the same spec, seed and variables, "
    "each shard once",
    Code.NO_LAST_SEED: "run faultbox test SPEC once (every run records its seed in .faultbox/last-seed beside "
    "the spec), or pass --seed N",
    Code.BUNDLE_UNREADABLE: "name a .fb file written by faultbox test (in .faultbox/bundles/ beside the spec); "
    "a bundle cut short by a full disk or a partial copy cannot be read: copy it again",
    Code.BUNDLE_VERSION: "read the bundle with the faultbox version named in the message (pip install "
    "faultbox==VERSION), or run the spec again with this one",
    Code.BUNDLE_SPEC: "the bundle's spec does not load with this faultbox: fix it in the spec's directory and "
    "run faultbox test again, or read the bundle with faultbox inspect (it runs nothing)",
    Code.INTERNAL: "this is a bug in faultbox; rerun with the same --seed and report it with the output",
    Code.FAULT_NOT_FIRED: "the fault matched no call while it was active: check the syscall, path or "
    "address it names, and that the step really makes the service perform it",
    Code.SOURCE_LAGGED: "the server's event source fell behind a step; a check made right after that step "
    "may not have seen its events: wait for them with an event-based assertion",
    Code.TEST_NO_ASSERTIONS: "check the outcome with assert_*(), expect= or a monitor; a step's failure is "
    "in its .ok and .status, not raised",
    Code.PROXY_UNDECODED: "the proxy saw traffic it could not decode on the interface: check the "
    "interface's protocol; its protocol faults cannot act on that traffic",
    Code.MONITOR_NEVER_MATCHES: "fix the monitor's type= or service=, or make the service produce those "
    "events (observe=, a fault or trace on it, wal=True); faultbox plan lists what each service produces",
    Code.DIFFERS_FROM_REFERENCE: "nothing to change if this is what you meant; docs/decisions.md says where and "
    "why faultbox behaves differently from the reference",
}


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """Where in a spec something was written."""

    file: str
    line: int
    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}" if self.col else f"{self.file}:{self.line}"


class FaultboxError(Exception):
    """Root of the errors faultbox raises on purpose: a message, a stable code and a fix.

    A subclass names its code once (`code = Code.X`); `str()` is the message alone, so that the
    error reads well inside another message, and `render()` is what a user is shown."""

    code: Code = Code.INTERNAL

    def __init__(self, message: str = "", hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else HINTS[self.code]

    def __str__(self) -> str:
        return self.message

    def render(self) -> str:
        return f"error [{self.code.value}]: {self.message}" + (f"\n  fix: {self.hint}" if self.hint else "")


class SpecError(FaultboxError):
    """The user's spec is wrong. Carries a code, a location and a one-line fix."""

    def __init__(
        self,
        code: Code,
        message: str,
        location: SourceLocation | None = None,
        hint: str | None = None,
        source_line: str | None = None,
    ) -> None:
        self.code = code
        super().__init__(message, hint)
        self.location = location
        self.source_line = source_line

    def render(self) -> str:
        from faultbox._util import display_path

        where = f"{display_path(str(self.location))}: " if self.location else ""
        lines = [f"{where}error [{self.code.value}]: {self.message}"]
        if self.source_line is not None and self.location is not None:
            text = self.source_line.rstrip()
            indent = len(text) - len(text.lstrip())
            lines.append(f"    {text.lstrip()}")
            if self.location.col:
                lines.append("    " + " " * max(self.location.col - 1 - indent, 0) + "^")
        if self.hint:
            lines.append(f"  fix: {self.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


class InfraError(FaultboxError):
    """The environment broke: a server could not start, a port is taken, the supervisor died.

    Raised directly with a code, or through a subclass that names its own (SupervisorError, ...)."""

    def __init__(self, code: Code, message: str, hint: str | None = None) -> None:
        self.code = code
        super().__init__(message, hint)


class UsageError(FaultboxError):
    """The command line, or a file named on it, is wrong (an option's value, a results file)."""

    code = Code.BAD_OPTION


class InternalError(FaultboxError):
    """A bug in faultbox."""


class SpecFailure(BaseException):
    """Raised by fail() and the assert_* builtins inside spec code.

    `details` carries structured context for reports (expected, actual, nearest events).
    """

    def __init__(self, message: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def __str__(self) -> str:
        return self.message


class MonitorStop(SpecFailure):
    """A monitor was violated; the scenario stops at its next step or wait."""


class Halted(SpecFailure):
    """halt(reason): the test stops without a verdict of pass or fail (its premise did not hold)."""


class TerminateBody(SpecFailure):
    """terminate_when held: the body is cancelled, which ends the test normally (not a failure)."""


class TestTimeout(SpecFailure):
    """The test ran past its deadline (also raised asynchronously into a stuck body)."""

    __test__ = False  # not a pytest test class

    def __init__(self, message: str = "the test ran past its deadline") -> None:
        super().__init__(message)


class MonitorOverdue(TestTimeout):
    """Raised asynchronously into a monitor call still running at the test's deadline."""

    def __init__(
        self, message: str = "still running at the test's deadline (a monitor must return quickly: an endless loop?)"
    ) -> None:
        super().__init__(message)


class PredicateOverdue(MonitorOverdue):
    """Raised asynchronously into a temporal property's predicate still running at the deadline."""

    def __init__(
        self,
        message: str = "still running at the test's deadline (a property's predicate must return quickly: "
        "an endless loop?)",
    ) -> None:
        super().__init__(message)
