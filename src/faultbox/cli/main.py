"""`faultbox test spec.star` and friends. Exit codes (DECISIONS §12): 0 all passed, 1 usage or load
error (a mistyped option, a spec without tests, or --test matched nothing), 2 any failure, 3
inconclusive only."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from faultbox import __version__
from faultbox._util.durations import DurationError, parse_duration
from faultbox._util.imports import decline_test_data_generators
from faultbox._util.threads import sigterm_as_interrupt
from faultbox.errors import FaultboxError, SpecError, UsageError
from faultbox.model.result import ExitCode, RunResult


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake exiting 1 as every other usage error does: 2 means a test failed."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message}\n")


DEFAULT_SPEC = "faultbox.star"


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="faultbox", description="Fault-injection tests for distributed systems.")
    parser.add_argument("--version", action="version", version=f"faultbox {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("version", help="print faultbox's version")
    test = sub.add_parser("test", help="run the tests of a spec")
    test.add_argument("spec", nargs="?", help=f"the .star spec file (default: ./{DEFAULT_SPEC})")
    test.add_argument(
        "--test",
        metavar="NAME",
        help="run only this test: an exact name (with or without test_), a matrix group, ~REGEX, or a glob",
    )
    test.add_argument(
        "--seed",
        type=_seed,
        metavar="N|last",
        help="seed for every random fault decision (default: random, printed); last: the seed of this spec's "
        "last run (kept in .faultbox/last-seed beside the spec)",
    )
    test.add_argument(
        "--runs",
        type=_runs,
        default=1,
        metavar="N",
        help="run each test up to N times, run i with a seed derived from --seed (run 1 with --seed itself); "
        "a test stops at its first failing run, whose seed replays it alone",
    )
    test.add_argument(
        "--leaf",
        metavar="DECISIONS",
        help="run one leaf of a test that fans out (choose(), max_fires=, parallel(interleavings=)), "
        "as a failed leaf's replay command gives it: e.g. 'choose.mode=1;fires.db:write=01'",
    )
    test.add_argument(
        "--shrink",
        type=_positive,
        default=20,
        metavar="N",
        help="runs to spend looking for a smaller failing case of a failed test with several faults, fires, "
        "priority changes or choices (default 20)",
    )
    test.add_argument("--no-shrink", action="store_true", help="do not shrink failed tests")
    test.add_argument(
        "--concurrent-start",
        action="store_true",
        help="start each service as soon as the services it depends_on are ready, the others at the same "
        "time (by default services start one after another, in declaration order within depends_on order)",
    )
    test.add_argument(
        "--runs-all", action="store_true", help="with --runs: run every test all N times, even after a failing run"
    )
    test.add_argument(
        "--jobs",
        "-j",
        type=_positive,
        metavar="N",
        help="run up to N tests at once, each worker with its own loopback network and /tmp "
        "(default: one per core, at most one per four tests; 1 runs them one after another)",
    )
    test.add_argument(
        "--shard",
        metavar="K/N",
        help="run only the K-th of N equal parts of the selected tests (merge the parts with faultbox report merge)",
    )
    test.add_argument("--timeout", default="120s", help="per-test deadline (default 120s)")
    test.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="json: write the whole result (every event) to stdout; progress goes to stderr",
    )
    test.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="also write the JSON result to FILE (rewritten after each test: a run that dies keeps what it did)",
    )
    test.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    test.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    test.add_argument(
        "--normalize",
        metavar="FILE",
        help="write the traces with run-specific values taken out (pids, ports, times, temp paths...): two runs "
        "of one seed give the same file; compare two with faultbox diff",
    )
    test.add_argument("--verbose", "-v", action="store_true", help="show details of passing tests too")
    test.add_argument(
        "--log-format",
        choices=("console", "json"),
        default="console",
        help="json: the run's progress as JSON lines (run started, each test started and finished, run finished)",
    )
    test.add_argument(
        "--dry-run", action="store_true", help="load the spec and list its services and tests; start nothing"
    )
    test.add_argument("--keep-workdir", action="store_true", help="keep the run's temporary directory")
    test.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help='a value the spec reads with var("NAME") (repeatable)',
    )
    test.add_argument(
        "--bundle-dir",
        metavar="DIR",
        help="where to write a failure bundle (.fb) per failed or errored test (default: .faultbox/bundles "
        "beside the spec; the newest 50 are kept); read one with faultbox inspect, run it again with faultbox replay",
    )
    test.add_argument("--no-bundles", action="store_true", help="write no failure bundles")

    check = sub.add_parser("check", help="load a spec and list its tests, without running anything")
    check.add_argument("spec", nargs="?", help=f"the .star spec file (default: ./{DEFAULT_SPEC})")
    check.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="json: {schema_version, spec, ok, tests, plan_instances, services, findings} on stdout",
    )
    check.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a spec variable, as for test")

    plan = sub.add_parser(
        "plan",
        help="what a spec will do, without running it: services and the syscalls each intercepts, tests, "
        "cells and their faults, monitors, and warnings about what can never happen",
    )
    plan.add_argument("spec", nargs="?", help=f"the .star spec file (default: ./{DEFAULT_SPEC})")
    plan.add_argument("--format", choices=("text", "json"), default="text", help="json: the plan as data on stdout")
    plan.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a spec variable, as for test")

    report = sub.add_parser(
        "report",
        help="show a saved result (faultbox test --output FILE) or a failure bundle (.fb) again, and write its "
        "reports; report merge A.json B.json ... joins the results of a sharded run",
    )
    report.add_argument(
        "results", nargs="+", metavar="RESULTS", help="the JSON result file or a .fb bundle; or merge FILE..."
    )
    report.add_argument("--output", "-o", metavar="FILE", help="write the (merged) JSON result to FILE")
    report.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    report.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    report.add_argument("--normalize", metavar="FILE", help="write the normalized traces, as test --normalize does")
    report.add_argument("--verbose", "-v", action="store_true", help="show details of passing tests too")

    diff = sub.add_parser(
        "diff",
        help="where two runs went apart: compare two normalized traces (test --normalize) or results "
        "(test --output); exit 0 same, 2 different",
    )
    diff.add_argument("a", metavar="A", help="a normalized trace or a result file")
    diff.add_argument("b", metavar="B", help="another")

    sub.add_parser(
        "mcp", help="serve the Model Context Protocol on stdin/stdout: check, plan and run specs from a coding agent"
    )
    docs = sub.add_parser("docs", help="list the documentation shipped with faultbox, or print one document")
    docs.add_argument("name", nargs="?", help="the document (e.g. spec-language, errors, faults)")

    from faultbox.cli.bundles import add_parsers as add_bundle_parsers
    from faultbox.cli.init import add_parser as add_init_parser
    from faultbox.cli.stubs import add_parser as add_stubs_parser

    add_bundle_parsers(sub)
    add_init_parser(sub)
    add_stubs_parser(sub)
    recipes = sub.add_parser("recipes", help="list the stdlib's protocol fault recipes, or show one file")
    recipes.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    recipes.add_argument("name", nargs="?", help="the protocol (for show)")

    doctor = sub.add_parser(
        "doctor",
        help="check this machine (kernel, seccomp, pidfd_getfd, shim, servers) and say how to fix what is missing",
    )
    doctor.add_argument("spec", nargs="?", help="narrow the checks to what this spec needs (servers it starts)")
    doctor.add_argument("--format", choices=("text", "json"), default="text", help="json: the checks as data")
    doctor.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a spec variable, as for test")
    return parser


def _seed(text: str) -> int | str:
    if text == "last":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write a whole number, or last (the last run's seed)") from None


def _runs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: write how many times to run each test, 1 or more")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: write a whole number of tests at once, 1 or more")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"faultbox {__version__}")
        return ExitCode.OK
    if args.command == "test":
        return _test(args)
    if args.command == "check":
        return _check(args)
    if args.command == "plan":
        return _plan(args)
    if args.command == "report":
        return _report(args)
    if args.command == "diff":
        return _diff(args)
    if args.command in ("replay", "inspect"):
        from faultbox.cli import bundles

        return bundles.replay(args) if args.command == "replay" else bundles.inspect(args)
    if args.command == "mcp":
        from faultbox.cli.mcp import serve

        return serve()
    if args.command == "docs":
        from faultbox.cli.docs import command as docs_command

        return docs_command(args)
    if args.command == "init":
        from faultbox.cli.init import command as init_command

        return init_command(args)
    if args.command == "stubs":
        from faultbox.cli.stubs import command as stubs_command

        return stubs_command(args)
    if args.command == "recipes":
        from faultbox.cli.recipes import recipes

        return recipes(args.action, args.name)
    if args.command == "doctor":
        from faultbox.cli.doctor import command

        return command(args)
    _parser().print_help(sys.stderr)
    return ExitCode.OK


def _load(path: str, variables: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    from faultbox.spec import load_spec

    return load_spec(path, variables)


def _variables(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--var {pair!r}: write NAME=VALUE")
        out[name] = value
    return out


def _fail(exc: FaultboxError) -> int:
    """Every error faultbox raises on purpose reads the same: where, code, what, and the fix."""
    print(exc.render(), file=sys.stderr)
    return ExitCode.USAGE


def _default_spec(args: argparse.Namespace) -> bool:
    """No spec named: ./faultbox.star, as the reference does; False (said why) when there is none."""
    if args.spec is not None:
        return True
    if not os.path.exists(DEFAULT_SPEC):
        print(
            f"error: name the spec (faultbox {args.command} SPEC.star), or put a {DEFAULT_SPEC} in this directory",
            file=sys.stderr,
        )
        return False
    args.spec = DEFAULT_SPEC
    return True


def _check(args: argparse.Namespace) -> int:
    """The spec loaded and described, nothing started. Exit 0 when it has no error finding, 1 when
    it does (it did not load, or it defines no test: what `faultbox test` refuses too)."""
    if not _default_spec(args):
        return ExitCode.USAGE
    try:
        spec = _load(args.spec, _variables(args.var))
    except FaultboxError as exc:
        if args.format == "json":
            finding = {"level": "error", "code": exc.code.value, "message": exc.message, "suggestion": exc.hint or ""}
            if isinstance(exc, SpecError) and exc.location is not None:
                finding["location"] = str(exc.location)
            _check_json(args.spec, None, [finding])
        else:
            print(exc.render(), file=sys.stderr)
        return ExitCode.USAGE
    from faultbox.spec import NoTestsDiscovered
    from faultbox.spec.plan import reference_differences, static_findings

    findings = []
    if not spec.tests:
        none = NoTestsDiscovered(args.spec)
        findings.append({"level": "error", "code": none.code.value, "message": none.message, "suggestion": none.hint})
    findings += [f.to_dict() for f in static_findings(spec)]
    findings += [f.to_dict() for f in reference_differences(spec)]
    if args.format == "json":
        _check_json(args.spec, spec, findings)
    else:
        _check_text(args.spec, spec, findings)
    return ExitCode.USAGE if any(f["level"] == "error" for f in findings) else ExitCode.OK


def _plan(args: argparse.Namespace) -> int:
    """The plan of a spec; exit 0 when it loads (warnings included), 1 when it does not."""
    import json

    from faultbox.spec.plan import describe

    if not _default_spec(args):
        return ExitCode.USAGE
    try:
        spec = _load(args.spec, _variables(args.var))
    except FaultboxError as exc:
        return _fail(exc)
    plan = describe(spec)
    plan["spec"] = args.spec
    if args.format == "json":
        print(json.dumps(plan, indent=2))
    else:
        _plan_text(plan)
    return ExitCode.OK


def _plan_text(plan: dict[str, Any]) -> None:
    services, tests = plan["services"], plan["tests"]
    print(f"plan of {plan['spec']}: {len(services)} services, {len(tests)} tests")
    print("\nservices")
    width = max((len(s["name"]) for s in services), default=0)
    for s in services:
        ifaces = ", ".join(f"{i['name']} {i['protocol']} :{i['port']}" for i in s["interfaces"]) or "no interface"
        print(f"  {s['name']:<{width}}  {s['kind']}, {ifaces}" + ("  (kept between tests)" if s["reuse"] else ""))
        if s["depends_on"]:
            print(f"  {'':<{width}}  depends on {', '.join(s['depends_on'])}")
        print(f"  {'':<{width}}  intercepts {', '.join(s['intercepts']) or 'nothing (runs without a filter)'}")
        if s["events"]:
            print(f"  {'':<{width}}  also produces {', '.join(s['events'])} events")
    print("\ntests")
    width = max((len(t["name"]) for t in tests), default=0)
    for t in tests:
        where = t["location"].rsplit("/", 1)[-1]
        if "cell" in t:
            what = f"cell {t['cell']['scenario']} × {t['cell']['fault']}"
        else:
            what = t["kind"] + (f" under {', '.join(t['assumptions'])}" if t.get("assumptions") else "")
        print(f"  {t['name']:<{width}}  {what}  [{where}]")
        if t.get("faults"):
            print(f"  {'':<{width}}    faults: {'; '.join(t['faults'])}")
    if plan["assumptions"]:
        print("\nassumptions")
        for fa in plan["assumptions"]:
            monitors = f"  monitors: {', '.join(fa['monitors'])}" if fa["monitors"] else ""
            print(f"  {fa['name']}: {'; '.join(fa['faults']) or 'no faults'}{monitors}")
    if plan["monitors"]:
        print("\nmonitors")
        for m in plan["monitors"]:
            filters = ", ".join(f'{k}="{v}"' for k, v in m["filters"].items()) or "every event"
            print(f"  {m['name']}: {filters}  [{m['location'].rsplit('/', 1)[-1]}]")
    for f in plan["findings"]:
        where = f"{f['location']}: " if f.get("location") else ""
        print(f"\n{where}{f['level']} [{f['code']}]: {f['message']}\n  fix: {f['suggestion']}")


def _services(spec: Any) -> list[dict[str, Any]]:
    out = []
    for svc in spec.services.values():
        out.append(
            {
                "name": svc.name,
                "kind": "mock" if svc.is_mock else (svc.managed.kind if svc.managed else "process"),
                "interfaces": [{"name": i.name, "protocol": i.protocol, "port": i.port} for i in svc.interfaces],
                "intercepts": sorted(spec.syscalls.get(svc.name, ())),
                "reuse": svc.reuse,
            }
        )
    return out


def _check_json(path: str, spec: Any, findings: list[dict[str, str]]) -> None:
    import json

    tests = [t.name for t in spec.tests] if spec is not None else None
    report = {
        "schema_version": 1,
        "spec": path,
        "ok": not any(f["level"] == "error" for f in findings),
        "tests": tests,
        "plan_instances": len(tests or []),
        "services": _services(spec) if spec is not None else [],
        "findings": findings,
    }
    print(json.dumps(report, indent=2))


def _check_text(path: str, spec: Any, findings: list[dict[str, str]]) -> None:
    print(f"{path}: {len(spec.services)} services, {len(spec.tests)} tests")
    for svc in spec.services.values():
        if svc.is_mock:
            routes = sum(len(c.routes) + len(c.line_routes) for c in svc.mocks.values())
            ifaces = ", ".join(f"{i.name} {i.protocol} :{i.port}" for i in svc.interfaces)
            print(f"  mock {svc.name}: {ifaces}, {routes} route{'' if routes == 1 else 's'}")
            continue
        filt = ", ".join(sorted(spec.syscalls.get(svc.name, ()))) or "none"
        kept = " (kept between tests)" if svc.reuse else ""
        print(f"  service {svc.name}: intercepts {filt}{kept}")
    for t in spec.tests:
        print(f"  {t.name}")
    for f in findings:
        where = f"{f['location']}: " if f.get("location") else ""
        print(f"{where}{f['level']} [{f['code']}]: {f['message']}", file=sys.stderr)
        if f.get("suggestion"):
            print(f"  {'note' if f['level'] == 'info' else 'fix'}: {f['suggestion']}", file=sys.stderr)


def _test(args: argparse.Namespace) -> int:
    from faultbox.report.console import ConsoleReporter
    from faultbox.runner.listeners import RunListener
    from faultbox.runner.run import NoTestMatched, RunOptions, run_spec

    if not _default_spec(args):
        return ExitCode.USAGE
    try:
        try:
            timeout = parse_duration(args.timeout)
        except DurationError as exc:
            raise UsageError(f"--timeout: {exc}") from None
        from faultbox.model.decisions import Decisions

        leaf = Decisions.from_text(args.leaf) if args.leaf else None
        spec = _load(args.spec, _variables(args.var))
        if args.seed == "last":
            from faultbox.runner import last_seed

            args.seed = last_seed.read(args.spec)
        shard = None
        if args.shard:
            from faultbox.runner.select import parse_shard

            shard = parse_shard(args.shard)
            if args.seed is None:
                raise UsageError(
                    "--shard needs --seed: every shard of a run must use the same seed, so that merged shards "
                    "read as one run",
                    "pass the same --seed to every shard (e.g. --seed $GITHUB_RUN_ID)",
                )
    except FaultboxError as exc:
        return _fail(exc)
    if args.dry_run:
        return _dry_run(args.spec, spec)
    seed = args.seed if args.seed is not None else secrets.randbelow(1 << 31)
    from faultbox.runner import last_seed

    unwritten = last_seed.write(args.spec, seed)  # before the run: a run that is killed keeps its seed
    if unwritten:
        print(f"warning: the seed is not kept for --seed last: {unwritten}", file=sys.stderr)
    stream = sys.stderr if args.format == "json" else sys.stdout
    reporter: RunListener
    if args.log_format == "json":
        from faultbox.report.log_lines import JsonLinesReporter

        reporter = JsonLinesReporter(stream)
    else:
        reporter = ConsoleReporter(stream, verbose=args.verbose, runs=args.runs)
    sigterm_as_interrupt()
    options = RunOptions(
        seed=seed,
        test=args.test,
        timeout=timeout,
        keep_workdir=args.keep_workdir,
        spec_arg=args.spec,
        jobs=args.jobs,
        shard=shard,
        record_durations=True,
        runs=args.runs,
        runs_all=args.runs_all,
        leaf=leaf,
        shrink=0 if args.no_shrink else args.shrink,
        concurrent_start=args.concurrent_start,
    )
    listeners: list[RunListener] = []
    if not args.no_bundles:
        from faultbox.cli.bundles import BundleWriter

        # First: the console and the result file name the bundle of a failed test.
        listeners.append(BundleWriter(spec, args.spec, seed, timeout, args.bundle_dir))
    if args.output:
        from faultbox.report.json_results import PartialResults

        # Before the console: a test the console says finished is already in the file, even if the
        # run is killed right after.
        listeners.append(PartialResults(args.output))
    listeners.append(reporter)
    try:
        result = run_spec(spec, options, listeners)
    except NoTestMatched as exc:
        _fail(exc)
        print(f"tests in {args.spec}:", file=sys.stderr)
        for name in exc.available:
            print(f"  {name}", file=sys.stderr)
        return ExitCode.USAGE
    except FaultboxError as exc:
        return _fail(exc)
    if args.format == "json":
        from faultbox.report import json_results

        json_results.dump(result, sys.stdout)
    _write_reports(result, output=args.output, junit=args.junit, html=args.html, normalize=args.normalize)
    return int(result.exit_code)


def _dry_run(path: str, spec: Any) -> int:
    """What `faultbox test --dry-run` shows: the services in the order they start, the tests, and
    how many of them are matrix cells. Nothing is started."""
    from faultbox.model.service import start_order

    print(f"Dry-run: loaded {path}")
    print(f"Services: {len(spec.services)}")
    for svc in start_order(spec.services.values()):
        print(f"  - {svc.name}")
    print(f"Tests: {len(spec.tests)}")
    for test in spec.tests:
        print(f"  - {test.name}")
    cells = sum(1 for t in spec.tests if t.fault_scenario is not None and t.fault_scenario.matrix is not None)
    if cells:
        print(f"Fault matrix cells: {cells}")
    return ExitCode.OK


def _report(args: argparse.Namespace) -> int:
    """The console report of a saved run, as it was printed then, and the files asked for. Exit 0
    when the reports were written (the run's own verdict is in them), 1 when the file is unusable."""
    from faultbox.report.console import ConsoleReporter
    from faultbox.report.merge import merge_runs

    files = list(args.results)
    merging = files[0] == "merge"
    if merging:
        files = files[1:]
    elif len(files) > 1:
        print(
            "error: name one result file, or merge the results of shards: faultbox report merge A.json B.json ...",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    try:
        runs = [(path, _read_result(path)) for path in files]
        result = merge_runs(runs) if merging else runs[0][1]
    except FaultboxError as exc:
        return _fail(exc)
    reporter = ConsoleReporter(sys.stdout, verbose=args.verbose, runs=result.runs)
    reporter.run_started(result, [t.name for t in result.tests])
    for test in result.tests:
        reporter.test_finished(test)
    reporter.run_finished(result)
    _write_reports(result, output=args.output, junit=args.junit, html=args.html, normalize=args.normalize)
    # A merge stands for the run it joins: its exit code is that run's.
    return int(result.exit_code) if merging else ExitCode.OK


def _read_result(path: str) -> RunResult:
    """A saved JSON result, or the one test of a failure bundle as a run."""
    from faultbox.report import bundle, json_results

    if bundle.is_bundle(path):
        return bundle.read(path).run_result()
    return json_results.read(path)


def _diff(args: argparse.Namespace) -> int:
    """Exit 0 when the two traces are the same, 2 when they differ, 1 when a file is unusable."""
    from faultbox.report import diff

    try:
        a, b = diff.load(args.a), diff.load(args.b)
    except FaultboxError as exc:
        return _fail(exc)
    result = diff.diff(a, b, args.a, args.b)
    print("\n".join(diff.render(result)))
    return ExitCode.OK if result.same else ExitCode.FAILED


def _write_reports(
    result: RunResult,
    *,
    output: str | None = None,
    junit: str | None = None,
    html: str | None = None,
    normalize: str | None = None,
) -> None:
    if output:
        from faultbox.report import json_results

        json_results.write(result, output)
        print(f"results: {output}", file=sys.stderr)
    if junit:
        from faultbox.report import junit as junit_xml

        junit_xml.write(result, junit)
        print(f"junit: {junit}", file=sys.stderr)
    if html:
        from faultbox.report import html as html_page

        html_page.write(result, html)
        print(f"report: {html}", file=sys.stderr)
    if normalize:
        from faultbox.trace import normalize as normalized

        normalized.write(result, normalize)
        print(f"normalized trace: {normalize}", file=sys.stderr)


def entry() -> None:
    decline_test_data_generators()  # checking a Kafka fault imports the codec: 0.6 s of CPU spared
    try:
        code = main()
    except KeyboardInterrupt as exc:  # during load (a run reports its own interruption)
        from faultbox._util import display_path
        from faultbox.spec.compile import location_of

        where = location_of(exc)
        print(
            f"interrupted while loading the spec{f' (it was running {display_path(str(where))})' if where else ''}",
            file=sys.stderr,
        )
        code = 130
    except BrokenPipeError:  # `faultbox plan spec.star | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that flushing stdout at exit does not fail again
        code = ExitCode.OK
    sys.exit(code)


if __name__ == "__main__":
    entry()
