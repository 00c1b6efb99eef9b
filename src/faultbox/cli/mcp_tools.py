"""The tools and resources of `faultbox mcp` (the protocol is in mcp.py).

Everything that runs spec code runs in a child `faultbox` process (check, plan, test): a spec that
hangs, prints, or crashes its interpreter cannot take the server with it, a deadline or a
cancelled request can stop it, and every call sees the files as they are now (nothing cached
between calls). The child's answer is what the command line gives: `check --format json` and
`plan --format json` as they are, and a test run's saved result (`test --output FILE`), read back
with report/json_results.py and summarised without its events. Only `show_report` (a saved result)
and the documents are read in this process: no spec code runs there."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faultbox
from faultbox._util import display_path
from faultbox._util.durations import DurationError, parse_duration
from faultbox._util.spell import did_you_mean
from faultbox.errors import FaultboxError, UsageError
from faultbox.model.result import RunResult, TestResult

JSON = dict[str, Any]

CHECK_DEADLINE = 120.0  # seconds for a check or a plan (loading a spec starts nothing)
RUN_DEADLINE = 1800.0  # default max_seconds of a whole test run
STOP_GRACE = 15.0  # after SIGTERM, a run tears its services down and writes its result; then SIGKILL
BEFORE_KEPT = 5  # events kept before a violation's event in a test's summary


class ToolError(UsageError):
    """The call cannot be made as asked (an argument is wrong): a tool result with isError, so the
    agent reads the message and calls again."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "see the tool's inputSchema (tools/list) or docs/mcp.md")


@dataclass
class Call:
    """One tools/call in flight: what cancelling it must stop."""

    cancelled: threading.Event = field(default_factory=threading.Event)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def cancel(self) -> None:
        self.cancelled.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            _interrupt(proc)

    def adopt(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.append(proc)
        if self.cancelled.is_set():
            _interrupt(proc)

    def release(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            if proc in self._procs:
                self._procs.remove(proc)


@dataclass
class ToolResult:
    text: list[str]
    structured: JSON | None = None
    is_error: bool = False

    def to_dict(self) -> JSON:
        out: JSON = {"content": [{"type": "text", "text": t} for t in self.text], "isError": self.is_error}
        if self.structured is not None:
            out["structuredContent"] = self.structured
        return out


@dataclass(frozen=True)
class Tool:
    name: str
    title: str
    description: str
    properties: JSON
    required: tuple[str, ...]
    read_only: bool
    run: Callable[[Toolbox, JSON, Call], ToolResult]

    def describe(self) -> JSON:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": {
                "type": "object",
                "properties": self.properties,
                "required": list(self.required),
                "additionalProperties": False,
            },
            "annotations": {
                "title": self.title,
                "readOnlyHint": self.read_only,
                "destructiveHint": False,
                "openWorldHint": False,
            },
        }


@dataclass(frozen=True)
class Doc:
    name: str  # README.md, errors.md, ...
    path: Path
    title: str

    @property
    def uri(self) -> str:
        return f"faultbox://docs/{self.name}"

    def describe(self) -> JSON:
        return {"uri": self.uri, "name": self.name, "title": self.title, "mimeType": "text/markdown"}


@dataclass
class Child:
    returncode: int | None  # None: stopped by the server (deadline, cancel)
    stdout: str
    stderr: str
    stopped: str = ""  # why the server stopped it


class Toolbox:
    """The tools, with what they share: a work directory (inline specs, default result files), a
    lock that runs one test run at a time (tests on fixed ports would clash), and the interpreter
    that runs faultbox."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self.workdir = Path(tempfile.mkdtemp(prefix="faultbox-mcp-"))
        self._run_lock = threading.Lock()
        self._counter = 0
        self._counter_lock = threading.Lock()
        self.tools = {t.name: t for t in TOOLS}

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def call(self, name: str, arguments: JSON, call: Call) -> ToolResult:
        tool = self.tools[name]
        try:
            _validate(tool, arguments)
            return tool.run(self, arguments, call)
        except ToolError as exc:
            return ToolResult([f"error: {exc}"], is_error=True)

    def next_name(self, prefix: str, suffix: str) -> Path:
        with self._counter_lock:
            self._counter += 1
            return self.workdir / f"{prefix}-{self._counter}{suffix}"

    # -- child processes ---------------------------------------------------------------------

    def faultbox(self, args: list[str], call: Call, deadline: float) -> Child:
        """`faultbox ARGS` in a child process, its output captured (none reaches the server's
        stdout), stdin closed, in a session of its own; stopped when the call is cancelled or
        the deadline passes (SIGTERM: a run tears down and writes its result; SIGKILL after a grace)."""
        if call.cancelled.is_set():  # nothing is started for a cancelled call (nor answered)
            return Child(None, "", "", "cancelled")
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "160", "PYTHONUNBUFFERED": "1"}
        env.pop("FORCE_COLOR", None)
        proc = subprocess.Popen(
            [self.python, "-m", "faultbox", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=env,
        )
        call.adopt(proc)
        stopped = ""
        limit = time.monotonic() + deadline
        try:
            while True:
                try:
                    out, err = proc.communicate(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if stopped:
                    continue
                if call.cancelled.is_set():
                    stopped = "cancelled"
                elif time.monotonic() > limit:
                    stopped = f"still running after {deadline:g}s"
                if stopped:
                    _interrupt(proc)
                    threading.Thread(target=_kill_later, args=(proc,), daemon=True).start()
        finally:
            call.release(proc)
        return Child(
            None if stopped else proc.returncode,
            out.decode("utf-8", "replace"),
            err.decode("utf-8", "replace"),
            stopped,
        )

    def run_lock(self) -> threading.Lock:
        return self._run_lock


def _interrupt(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)  # a run stops as on Ctrl-C: tears down, writes its result
        except OSError:
            pass


def _kill_later(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's whole session (start_new_session)
    except OSError:
        pass


# -- arguments ---------------------------------------------------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
}


def _validate(tool: Tool, arguments: JSON) -> None:
    for name in arguments:
        if name not in tool.properties:
            raise ToolError(
                f"{tool.name} has no argument {name!r}{did_you_mean(name, tool.properties)}; "
                f"it takes {', '.join(tool.properties) or 'none'}"
            )
    for name in tool.required:
        if arguments.get(name) is None:
            raise ToolError(f"{tool.name} needs the argument {name!r}")
    for name, value in arguments.items():
        if value is None:
            continue
        schema = tool.properties[name]
        kinds = schema.get("type")
        if isinstance(kinds, str):
            kinds = [kinds]
        if kinds:
            ok = any(isinstance(value, _TYPES[k]) for k in kinds)
            if isinstance(value, bool) and "boolean" not in kinds:
                ok = False  # JSON true is not a number here
            if not ok:
                raise ToolError(f"{tool.name}: {name} must be {' or '.join(kinds)}, not {json.dumps(value)}")


def _var_args(arguments: JSON) -> list[str]:
    out: list[str] = []
    for name, value in (arguments.get("vars") or {}).items():
        if not name or "=" in name:
            raise ToolError(f"vars: {name!r} is not a variable name")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, (str, int, float)):
            raise ToolError(f"vars: the value of {name} must be a string, not {json.dumps(value)}")
        out += ["--var", f"{name}={value}"]
    return out


class _SpecFile:
    """The spec a call names: `file` as given (relative to the server's directory), or `source`
    written to a file (in `base_dir` when given, so that load() and relative binaries resolve)."""

    def __init__(self, box: Toolbox, arguments: JSON) -> None:
        file, source = arguments.get("file"), arguments.get("source")
        self.temp: Path | None = None
        if (file is None) == (source is None):
            raise ToolError("give the spec as file (a path) or as source (its text), one of the two")
        if file is not None:
            if arguments.get("base_dir") is not None:
                raise ToolError("base_dir goes with source; a file's own directory is its base")
            self.path = str(file)
            return
        base = arguments.get("base_dir")
        if base is not None:
            if not os.path.isdir(base):
                raise ToolError(f"base_dir {base!r} is not a directory")
            fd, name = tempfile.mkstemp(prefix=".faultbox-mcp-", suffix=".star", dir=base)
            os.close(fd)
            self.temp = Path(name)
        else:
            self.temp = box.next_name("inline", ".star")
        self.temp.write_text(str(source), encoding="utf-8")
        self.path = str(self.temp)

    def shown(self, value: Any) -> Any:
        """value with the temporary file's path replaced by <source>, for an inline spec."""
        if self.temp is None:
            return value
        # As the child wrote it: absolute, or relative to the working directory (display_path).
        for form in (str(self.temp), display_path(str(self.temp))):
            value = _replace(value, form, "<source>")
        return value

    def close(self) -> None:
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)


def _replace(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v, old, new) for k, v in value.items()}
    return value


def _json_text(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _child_json(child: Child) -> JSON | None:
    try:
        data = json.loads(child.stdout)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _child_failed(what: str, child: Child) -> ToolResult:
    if child.stopped:
        head = f"error: faultbox {what} was stopped: {child.stopped}"
    else:
        head = f"error: faultbox {what} ended with exit code {child.returncode} and no answer"
    tail = child.stderr.strip()[-4000:]
    return ToolResult([head + (f"\n{tail}" if tail else "")], is_error=True)


# -- the tools ---------------------------------------------------------------------------------


def _check_spec(box: Toolbox, arguments: JSON, call: Call) -> ToolResult:
    spec = _SpecFile(box, arguments)
    try:
        variables = _var_args(arguments)
        child = box.faultbox(["check", spec.path, "--format", "json", *variables], call, CHECK_DEADLINE)
        report = _child_json(child)
        if report is None:
            return _child_failed("check", child)
        if report.get("ok"):
            return ToolResult([_json_text(spec.shown(report))], spec.shown(report))
        # The findings as faultbox prints them (file:line, the line, the code, the fix): the
        # text form of the same check.
        text = box.faultbox(["check", spec.path, *variables], call, CHECK_DEADLINE)
        rendered = text.stderr.strip() or "\n".join(
            f"{f.get('location', '')}: {f['level']} [{f['code']}]: {f['message']}\n  fix: {f.get('suggestion', '')}"
            for f in report.get("findings", [])
        )
        return ToolResult([spec.shown(rendered), _json_text(spec.shown(report))], spec.shown(report), is_error=True)
    finally:
        spec.close()


def _plan(box: Toolbox, arguments: JSON, call: Call) -> tuple[JSON | None, ToolResult | None, _SpecFile]:
    spec = _SpecFile(box, arguments)
    try:
        child = box.faultbox(["plan", spec.path, "--format", "json", *_var_args(arguments)], call, CHECK_DEADLINE)
    except BaseException:
        spec.close()
        raise
    plan = _child_json(child)
    if plan is not None and child.returncode == 0:
        return spec.shown(plan), None, spec
    if child.returncode == 1 and child.stderr.strip():
        return None, ToolResult([spec.shown(child.stderr.strip())], is_error=True), spec
    return None, _child_failed("plan", child), spec


def _plan_spec(box: Toolbox, arguments: JSON, call: Call) -> ToolResult:
    plan, failed, spec = _plan(box, arguments, call)
    spec.close()
    if plan is None:
        assert failed is not None
        return failed
    return ToolResult([_json_text(plan)], plan)


def _list_tests(box: Toolbox, arguments: JSON, call: Call) -> ToolResult:
    plan, failed, spec = _plan(box, arguments, call)
    spec.close()
    if plan is None:
        assert failed is not None
        return failed
    tests = []
    for t in plan["tests"]:
        item = {"name": t["name"], "kind": t.get("kind", ""), "location": t.get("location", "")}
        if "cell" in t:
            item["cell"] = t["cell"]
        tests.append(item)
    out = {"file": plan.get("spec", ""), "tests": tests, "count": len(tests)}
    return ToolResult([_json_text(out)], out)


def _run_test(box: Toolbox, arguments: JSON, call: Call) -> ToolResult:
    file = str(arguments["file"])
    args = ["test", file]
    if arguments.get("test") is not None:
        args += ["--test", str(arguments["test"])]
    if arguments.get("seed") is not None:
        args += ["--seed", str(arguments["seed"])]
    timeout = arguments.get("timeout")
    if timeout is not None:
        text = f"{timeout}s" if isinstance(timeout, (int, float)) else str(timeout)
        try:
            if parse_duration(text) <= 0:
                raise DurationError("it must be more than 0")
        except DurationError as exc:
            raise ToolError(f"timeout {timeout!r}: {exc}") from None
        args += ["--timeout", text]
    if arguments.get("jobs") is not None:
        if arguments["jobs"] < 1:
            raise ToolError("jobs must be 1 or more")
        args += ["--jobs", str(arguments["jobs"])]
    max_seconds = float(arguments.get("max_seconds") or RUN_DEADLINE)
    if max_seconds <= 0:
        raise ToolError("max_seconds must be more than 0")
    output = arguments.get("output")
    results = Path(output) if output else box.next_name("results", ".json")
    args += ["--output", str(results), *_var_args(arguments)]
    results.unlink(missing_ok=True)  # what is read back is this run's, or nothing
    with box.run_lock():
        child = box.faultbox(args, call, max_seconds)
    if child.returncode == 1 or (child.returncode is not None and not results.exists()):
        # Refused before anything ran: the spec did not load, --test matched nothing, a bad option.
        message = child.stderr.strip() or child.stdout.strip()
        return ToolResult([message or f"error: faultbox test ended with exit code {child.returncode}"], is_error=True)
    try:
        from faultbox.report import json_results

        result = json_results.read(str(results))
    except FaultboxError:
        return _child_failed("test", child)
    summary = summarize(result)
    summary["results"] = str(results)
    console = child.stdout.strip()
    if child.stopped or child.returncode not in (0, 2, 3):
        why = child.stopped or f"it ended with exit code {child.returncode}"
        summary["stopped"] = why
        text = f"error: the run was stopped ({why}); the tests it finished are below"
        tail = child.stderr.strip()[-2000:]
        return ToolResult([text, _json_text(summary), console + (f"\n{tail}" if tail else "")], summary, True)
    return ToolResult([_json_text(summary), console], summary)


def summarize(result: RunResult) -> JSON:
    """A run without its events: each test's outcome, why, where, and how to replay it."""
    return {
        "spec": result.spec,
        "seed": result.seed,
        "exit_code": int(result.exit_code),
        "counts": result.counts(),
        "interrupted": result.interrupted,
        "duration_ms": result.duration_ms,
        "tests": [_test_summary(t) for t in result.tests],
        "matrix": result.matrix.to_dict() if result.matrix else None,
    }


def _test_summary(test: TestResult) -> JSON:
    out = test.to_dict(with_events=False)
    out.pop("started", None)
    violation = out.get("violation")
    if violation and len(violation.get("before") or []) > BEFORE_KEPT:
        violation["before"] = violation["before"][-BEFORE_KEPT:]
    return dict(out)


def _show_report(box: Toolbox, arguments: JSON, call: Call) -> ToolResult:
    from faultbox.report import json_results
    from faultbox.report.console import ConsoleReporter

    try:
        result = json_results.read(str(arguments["results"]))
    except FaultboxError as exc:
        return ToolResult([exc.render()], is_error=True)
    stream = io.StringIO()
    reporter = ConsoleReporter(stream, color=False, verbose=bool(arguments.get("verbose")))
    reporter.run_started(result, [t.name for t in result.tests])
    for test in result.tests:
        reporter.test_finished(test)
    reporter.run_finished(result)
    summary = summarize(result)
    return ToolResult([stream.getvalue().rstrip(), _json_text(summary)], summary)


def _list_docs(box: Toolbox, arguments: JSON, call: Call) -> ToolResult:
    docs = find_docs()
    out: JSON = {"docs": [d.describe() for d in docs]}
    if not docs:
        out["note"] = "no documentation found beside this faultbox installation"
    return ToolResult([_json_text(out)], out)


def _read_doc(box: Toolbox, arguments: JSON, call: Call) -> ToolResult:
    name = str(arguments["name"]).removeprefix("faultbox://docs/")
    docs = {d.name: d for d in find_docs()}
    if name not in docs and f"{name}.md" in docs:
        name = f"{name}.md"
    if name not in docs:
        raise ToolError(f"no document {name!r}{did_you_mean(name, docs)}; there are {', '.join(docs) or 'none'}")
    return ToolResult([docs[name].path.read_text(encoding="utf-8", errors="replace")])


# -- documents ---------------------------------------------------------------------------------


def docs_dirs() -> list[Path]:
    """Where the documents may be: shipped inside the package (faultbox/_docs, README.md beside
    the others), or the checkout the package runs from (README.md and docs/)."""
    package = Path(faultbox.__file__).resolve().parent
    return [package / "_docs", package.parent.parent / "docs"]


def find_docs() -> list[Doc]:
    for directory in docs_dirs():
        if not (directory / "errors.md").is_file():
            continue
        readme = directory / "README.md"
        if not readme.is_file():
            readme = directory.parent / "README.md"
        files = ([readme] if readme.is_file() else []) + sorted(
            p for p in directory.glob("*.md") if p.name != "README.md"
        )
        return [Doc(p.name, p, _title(p)) for p in files]
    return []


def _title(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("# "):
                    return line[2:].strip()
    except OSError:
        pass
    return path.stem


# -- the table ---------------------------------------------------------------------------------

_SPEC_ARGS: JSON = {
    "file": {"type": "string", "description": "path of the .star spec (relative to the server's directory)"},
    "source": {
        "type": "string",
        "description": "the spec's text instead of a file; locations in the answer name it <source>",
    },
    "base_dir": {
        "type": "string",
        "description": "with source: the directory it is written in for the call, so that load() and "
        "relative paths resolve (default: a temporary directory)",
    },
    "vars": {
        "type": "object",
        "description": "spec variables, as --var NAME=VALUE",
        "additionalProperties": {"type": ["string", "number", "boolean"]},
    },
}
_RUN_ARGS: JSON = {
    "file": {"type": "string", "description": "path of the .star spec (relative to the server's directory)"},
    "test": {
        "type": "string",
        "description": "which tests: an exact name (with or without test_), a matrix group, ~REGEX or a glob "
        "(default: all)",
    },
    "seed": {"type": "integer", "description": "seed for every random fault decision (default: random, reported)"},
    "vars": _SPEC_ARGS["vars"],
    "timeout": {
        "type": ["string", "number"],
        "description": 'per-test deadline: a duration ("30s", "500ms") or seconds (default 120s)',
    },
    "max_seconds": {
        "type": "number",
        "description": f"stop the whole run after this many seconds, keeping the tests it finished "
        f"(default {RUN_DEADLINE:g})",
    },
    "jobs": {"type": "integer", "description": "tests at once, as faultbox test --jobs (default: as faultbox test)"},
    "output": {
        "type": "string",
        "description": "also keep the whole result (every event) in this JSON file, for show_report or "
        "faultbox report (default: a file of the server's, removed when it stops)",
    },
}

TOOLS: tuple[Tool, ...] = (
    Tool(
        "check_spec",
        "Check a spec",
        "Load a faultbox spec without starting anything: its tests, services and findings (errors and "
        "warnings, each with its code, location and fix), the same JSON as `faultbox check --format json`. "
        "A spec that does not load, or defines no test, is an error result whose first text is faultbox's "
        "message (file:line, the line, the code, the fix).",
        _SPEC_ARGS,
        (),
        True,
        _check_spec,
    ),
    Tool(
        "plan_spec",
        "Plan a spec",
        "What a run of the spec will do, without running it: every service with the syscalls its filter "
        "intercepts and the events it can produce, every test and matrix cell with the faults it applies, "
        "assumptions, monitors, and warnings about what can never happen (`faultbox plan --format json`).",
        _SPEC_ARGS,
        (),
        True,
        _plan_spec,
    ),
    Tool(
        "list_tests",
        "List the tests of a spec",
        "The tests (and matrix cells) a spec defines, with where each is defined.",
        _SPEC_ARGS,
        (),
        True,
        _list_tests,
    ),
    Tool(
        "run_test",
        "Run tests",
        "Run the tests of a spec (all, or those `test` selects) with real services and faults, as "
        "`faultbox test`. Answers each test's outcome, reason, location, replay command, diagnostics "
        "and monitor violation (not its events: `output` keeps them), the run's counts and exit code "
        "(0 passed, 2 a test failed, 3 inconclusive), and faultbox's console report. A spec that does "
        "not load, or a `test` that matches nothing, is an error result with faultbox's message.",
        _RUN_ARGS,
        ("file",),
        False,
        _run_test,
    ),
    Tool(
        "run_single_test",
        "Run one test",
        "run_test with `test` required: one test (or matrix group) of a spec.",
        _RUN_ARGS,
        ("file", "test"),
        False,
        _run_test,
    ),
    Tool(
        "show_report",
        "Show a saved result",
        "The console report of a saved run (`faultbox test --output FILE`, or run_test's `results`) "
        "and its per-test summary, as `faultbox report FILE`.",
        {
            "results": {"type": "string", "description": "the JSON result file"},
            "verbose": {"type": "boolean", "description": "details of passing tests too"},
        },
        ("results",),
        True,
        _show_report,
    ),
    Tool(
        "list_docs",
        "List faultbox's documentation",
        "faultbox's documents (the spec language, faults, protocol faults, mocks, every error code "
        "with its fix, ...): their names and resource URIs. read_doc returns one.",
        {},
        (),
        True,
        _list_docs,
    ),
    Tool(
        "read_doc",
        "Read a faultbox document",
        "One of faultbox's documents as markdown, by name (spec-language.md, errors.md, ...), for "
        "clients that do not read resources.",
        {"name": {"type": "string", "description": "the document's name, as list_docs gives it"}},
        ("name",),
        True,
        _read_doc,
    ),
)
