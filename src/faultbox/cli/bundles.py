"""Failure bundles on the command line: `faultbox test` writes one per failed test (BundleWriter),
`faultbox replay BUNDLE` runs its test again, `faultbox inspect BUNDLE` shows what it holds.

Exit codes of replay: 0 the recorded failure reproduced (the replay ended with the recorded verdict,
for the same reason once both are normalized), 1 it did not, or the bundle could not be read or its
spec loaded (said why)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from faultbox import __version__
from faultbox.errors import Code, FaultboxError, UsageError
from faultbox.model.result import ExitCode, RunResult, TestResult, Verdict
from faultbox.report import bundle as fb
from faultbox.report.diff import TraceDiff
from faultbox.report.diff import render as render_diff

BUNDLE_DIR = os.path.join(".faultbox", "bundles")
_CAUGHT = (Verdict.FAIL, Verdict.ERROR)  # the verdicts that get a bundle


class BundleSpecError(UsageError):
    code = Code.BUNDLE_SPEC


def add_parsers(sub: Any) -> None:
    replay = sub.add_parser(
        "replay",
        help="run a failure bundle's test again (its spec, seed, variables and decisions) and say whether the "
        "failure reproduced: exit 0 it did, 1 it did not",
        description="Unpack a failure bundle into a temporary directory and run its one test again, with the "
        "recorded seed, variables and decisions. Reproduced means the same verdict for the same reason "
        "(both normalized). Exit codes: 0 the recorded failure reproduced; 1 it did not, or the bundle "
        "could not be read or its spec no longer loads.",
    )
    replay.add_argument("bundle", metavar="BUNDLE", help="a .fb file written by faultbox test")
    replay.add_argument("--html", metavar="FILE", help="write a self-contained HTML report of the replay")
    replay.add_argument("--json", metavar="FILE", help="write the replay's JSON result")
    replay.add_argument("--timeout", help="the test's deadline (default: the recorded run's)")
    replay.add_argument(
        "--isolated",
        action="store_true",
        help="use only the bundled files; by default the other files of the spec's directory (the programs it "
        "starts) are taken from where the spec was, so a fixed program replays fixed",
    )
    inspect = sub.add_parser(
        "inspect",
        help="show what a failure bundle holds (test, verdict, seed, files, last events); runs nothing",
        description="Show a failure bundle: the test, its verdict, reason and location, seed, decisions, "
        "variables, files, environment, faults, diagnostics and the events before the failure. Exit 0, or 1 "
        "when the file is not a bundle this faultbox reads.",
    )
    inspect.add_argument("bundle", metavar="BUNDLE", help="a .fb file written by faultbox test")
    inspect.add_argument("--json", action="store_true", help="the summary as JSON on stdout")
    inspect.add_argument("--events", type=int, default=20, metavar="N", help="events shown before the failure")


def default_dir(spec_arg: str) -> str:
    return os.path.join(os.path.dirname(spec_arg), BUNDLE_DIR)


def environment() -> dict[str, Any]:
    """Facts about this machine that explain a run and cost nothing to read (no probe is run)."""
    facts: dict[str, Any] = {
        "faultbox": __version__,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "euid": os.geteuid(),
        "cpus": os.cpu_count() or 0,
    }
    status = _read("/proc/self/status")
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            facts["cap_eff"] = line.split()[1]
    for key, path in (
        ("ptrace_scope", "/proc/sys/kernel/yama/ptrace_scope"),
        ("seccomp_actions", "/proc/sys/kernel/seccomp/actions_avail"),
        ("unprivileged_userns", "/proc/sys/kernel/unprivileged_userns_clone"),
    ):
        text = _read(path).strip()
        if text:
            facts[key] = text
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            facts["os"] = line.partition("=")[2].strip('"')
    if os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv"):
        facts["container"] = True
    return facts


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class BundleWriter:
    """A run listener that writes a bundle for every test that failed or errored, before the
    reporters hear of it (so the console and the JSON result name it). A bundle that cannot be
    written is a warning: the run goes on."""

    def __init__(
        self, spec: Any, spec_arg: str, seed: int, timeout: float, directory: str | None = None, warn: Any = None
    ) -> None:
        self.spec = spec
        self.spec_arg = spec_arg
        self.seed = seed
        self.timeout = timeout
        self.directory = directory or default_dir(spec_arg)
        self._warn = warn or (lambda text: print(text, file=sys.stderr))
        self._environment: dict[str, Any] | None = None

    def run_started(self, run: RunResult, tests: Sequence[str]) -> None:
        pass

    def test_started(self, name: str) -> None:
        pass

    def test_finished(self, result: TestResult) -> None:
        if result.verdict not in _CAUGHT:
            return
        from faultbox.spec.loader import spec_files

        path = os.path.join(self.directory, fb.file_name(result.name, result.seed))
        try:
            if self._environment is None:
                self._environment = environment()
            fb.write(
                path,
                spec_path=self.spec.path,
                files=spec_files(self.spec),
                result=result,
                seed=result.seed,
                variables=self.spec.variables,
                environment=self._environment,
                timeout=self.timeout,
                spec_arg=self.spec_arg,
            )
            fb.prune(self.directory)
        except Exception as exc:  # a bundle is a convenience; the run and its results are not
            self._warn(f"warning: no bundle for {result.name}: {exc}")
            return
        result.bundle = path

    def run_finished(self, result: RunResult) -> None:
        pass


# -- faultbox inspect ----------------------------------------------------------------------------


def inspect(args: argparse.Namespace) -> int:
    try:
        b = fb.read(args.bundle)
    except FaultboxError as exc:
        print(exc.render(), file=sys.stderr)
        return ExitCode.USAGE
    summary = _summary(b, max(0, args.events))
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False, default=repr))
    else:
        print("\n".join(_summary_text(summary)))
    return ExitCode.OK


def _summary(b: fb.Bundle, events: int) -> dict[str, Any]:
    r = b.result
    cut = r.violation.seq if r.violation is not None else None
    before = [e for e in r.events if cut is None or e.seq <= cut]
    return {
        "bundle": b.path,
        "format": b.manifest["format"],
        "faultbox": b.manifest.get("faultbox", ""),
        "created": b.manifest.get("created", ""),
        "test": b.test,
        "verdict": r.verdict.value,
        "outcome": r.outcome.value,
        "reason": r.reason,
        "location": r.location,
        "code": r.code,
        "seed": b.seed,
        "decisions": b.decisions,
        "variables": b.variables,
        "spec": b.spec,
        "spec_dir": b.manifest.get("spec_dir", ""),
        "files": {name: len(data) for name, data in sorted(b.files.items())},
        "skipped": b.skipped,
        "environment": b.environment,
        "faults": [f.to_dict() for f in r.faults],
        "diagnostics": [d.to_dict() for d in r.diagnostics],
        "violation": r.violation.to_dict() if r.violation is not None else None,
        "event_count": len(r.events),
        "last_events": [e.to_dict() for e in before[-events:]] if events else [],
        "replay": f"faultbox replay {b.path}",
    }


def _summary_text(s: dict[str, Any]) -> list[str]:
    from faultbox.model.event import Event

    out = [
        f"bundle:      {s['bundle']} (format {s['format']}, faultbox {s['faultbox']}, {s['created']})",
        f"test:        {s['test']}",
        f"verdict:     {s['verdict']} ({s['outcome']})" + (f" [{s['code']}]" if s["code"] else ""),
    ]
    reason = s["reason"].splitlines() or [""]
    out.append(f"reason:      {reason[0]}")
    out += [f"             {line}" for line in reason[1:]]
    if s["location"]:
        out.append(f"at:          {s['location']}")
    out.append(f"seed:        {s['seed']}")
    out.append(f"decisions:   {s['decisions'] or '(none: the test met no fan-out site)'}")
    variables = " ".join(f"{k}={v}" for k, v in s["variables"].items())
    out.append(f"variables:   {variables or '(none)'}")
    out.append(f"spec:        {s['spec']} (from {s['spec_dir']})")
    out.append("files:")
    out += [f"  {name}  ({size} bytes)" for name, size in s["files"].items()]
    for item in s["skipped"]:
        out.append(f"  left out: {item.get('path', '')}: {item.get('why', '')}")
    out.append("environment:")
    out += [f"  {k}: {v}" for k, v in s["environment"].items()]
    if s["faults"]:
        out.append("faults:")
        for f in s["faults"]:
            out.append(f"  {f['service']}.{f['keyword']}={f['decision']}: matched {f['matched']}, fired {f['fired']}")
    if s["diagnostics"]:
        out.append("diagnostics:")
        out += [f"  {d['level']} [{d['code']}] {d['message']}" for d in s["diagnostics"]]
    if s["violation"]:
        out.append(f"violation:   {s['violation']['monitor']}: {s['violation']['message']}")
    if s["last_events"]:
        where = "before the violation" if s["violation"] else "of the trace"
        out.append(f"last {len(s['last_events'])} events {where} (of {s['event_count']}):")
        for e in s["last_events"]:
            out.append(f"  {Event.from_dict(e).describe()}")
    out.append(f"replay:      {s['replay']}")
    return out


# -- faultbox replay -----------------------------------------------------------------------------


def replay(args: argparse.Namespace) -> int:
    from faultbox._util.durations import DurationError, parse_duration
    from faultbox.model.decisions import Decisions

    try:
        b = fb.read(args.bundle)
        try:
            decisions = Decisions.from_text(b.decisions)
        except FaultboxError as exc:
            raise fb.BundleError(f"{args.bundle}: damaged: its decisions do not read ({exc.message})") from None
        timeout = b.timeout
        if args.timeout:
            try:
                timeout = parse_duration(args.timeout)
            except DurationError as exc:
                raise UsageError(f"--timeout: {exc}") from None
    except FaultboxError as exc:
        print(exc.render(), file=sys.stderr)
        return ExitCode.USAGE
    workdir = tempfile.mkdtemp(prefix="faultbox-replay-")
    try:
        return _replay_in(b, decisions, timeout, workdir, args)
    except FaultboxError as exc:
        print(exc.render(), file=sys.stderr)
        return ExitCode.USAGE
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _replay_in(b: fb.Bundle, decisions: Any, timeout: float, workdir: str, args: argparse.Namespace) -> int:
    from faultbox.runner.leaf import LeafState
    from faultbox.runner.serial import SpecRunner
    from faultbox.spec import load_spec

    spec_path = b.extract(workdir)
    original = str(b.manifest.get("spec_dir") or "")
    if not args.isolated and os.path.isdir(original):
        _link_missing(original, workdir)
    try:
        spec = load_spec(spec_path, b.variables)
    except FaultboxError as exc:
        raise BundleSpecError(f"{b.path}: its spec does not load any more:\n{exc.render()}") from None
    if spec.test(b.test) is None:
        raise BundleSpecError(f"{b.path}: its spec has no test named {b.test} any more")
    recorded = b.result
    print(f"replaying {b.test} from {b.path}: seed {b.seed}" + (f", decisions {b.decisions}" if b.decisions else ""))
    with SpecRunner(spec, b.seed, timeout, spec_arg=b.spec) as runner:
        replayed = runner.run(b.test, leaf=LeafState(decisions))
    replayed.replay = f"faultbox replay {b.path}"
    _show(recorded, replayed)
    traces = _trace_diff(b, recorded, replayed)
    reproduced = _verdict_line(recorded, replayed, traces)
    if traces.same:
        print("the normalized traces are the same")
    else:
        print("the normalized traces differ:")
        print("\n".join(f"  {line}" for line in render_diff(traces)))
    result = RunResult(
        spec=b.spec,
        seed=b.seed,
        started=replayed.started,
        duration_ms=replayed.duration_ms,
        tests=[replayed],
        variables=b.variables,
        environment={k: str(v) for k, v in environment().items()},
    )
    if args.json:
        from faultbox.report import json_results

        json_results.write(result, args.json)
        print(f"results: {args.json}", file=sys.stderr)
    if args.html:
        from faultbox.report import html

        html.write(result, args.html)
        print(f"report: {args.html}", file=sys.stderr)
    return ExitCode.OK if reproduced else ExitCode.USAGE


def _link_missing(original: str, into: str) -> None:
    """Give the extracted spec the rest of its directory: a symbolic link to each entry of the
    original that the bundle does not hold (recursing into directories both have), so the programs
    a spec starts by relative path are found, as they are now."""
    try:
        entries = list(os.scandir(original))
    except OSError:
        return
    for entry in entries:
        if entry.name == ".faultbox":
            continue  # the original's seeds, durations and bundles are not the replay's
        target = os.path.join(into, entry.name)
        if not os.path.lexists(target):
            try:
                os.symlink(entry.path, target)
            except OSError:
                pass
        elif os.path.isdir(target) and not os.path.islink(target) and entry.is_dir():
            _link_missing(entry.path, target)


def _show(recorded: TestResult, replayed: TestResult) -> None:
    width = 9
    for label, r in (("recorded", recorded), ("replayed", replayed)):
        first = r.reason.splitlines()[0] if r.reason else ""
        print(f"  {label + ':':<{width}} {r.verdict.value.upper()} ({r.outcome.value}){': ' + first if first else ''}")


def _trace_diff(b: fb.Bundle, recorded: TestResult, replayed: TestResult) -> TraceDiff:
    from faultbox.report import diff
    from faultbox.trace.normalize import normalize_run

    def doc(test: TestResult) -> dict[str, Any]:
        return normalize_run(RunResult(spec=b.spec, seed=b.seed, started=0.0, tests=[test], variables=b.variables))

    return diff.diff(doc(recorded), doc(replayed), "recorded", "replayed")


def _verdict_line(recorded: TestResult, replayed: TestResult, traces: TraceDiff) -> bool:
    """Whether the failure reproduced: the same verdict, for the same reason (compared normalized,
    so a pid or a port in it does not count), said in a line."""
    if replayed.verdict is not recorded.verdict:
        print(
            f"did not reproduce: the recorded run ended {recorded.verdict.value}, the replay {replayed.verdict.value}"
        )
        return False
    reasons = traces.tests[0].reason if traces.tests else ("", "")
    if reasons[0] != reasons[1]:
        print(f"did not reproduce: the replay ended {replayed.verdict.value} too, but for another reason")
        return False
    print(f"reproduced: the replay ended {replayed.verdict.value} for the same reason, as the recorded run did")
    return True


__all__ = ["BundleWriter", "add_parsers", "inspect", "replay"]
