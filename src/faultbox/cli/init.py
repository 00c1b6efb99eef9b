"""`faultbox init`: a starter spec, for a command and its port or from a docker-compose.yml.

    faultbox init --name api --port 8080 [--protocol http|tcp] [--health /healthz] -- python app.py
    faultbox init --from-compose [docker-compose.yml]

The spec is written to ./faultbox.star (what `faultbox test` runs when no spec is named), to
`--output FILE`, or to stdout with `--output -`; an existing file is never overwritten unless
`--force` says so. What is written loads (`faultbox check` passes on it), and for a command that
serves its port, its tests pass.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import sys

from faultbox.errors import FaultboxError, UsageError
from faultbox.model.result import ExitCode

DEFAULT_OUTPUT = "faultbox.star"
PROTOCOLS = ("http", "tcp")
_INTERPRETERS = {"python", "python3", "node", "ruby", "perl", "php", "bash", "sh", "java", "deno", "bun", "uv"}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """The `init` subcommand's options (main.py calls this with its subparsers)."""
    init = sub.add_parser(
        "init",
        help="write a starter spec: for a command and its port (init --port 8080 -- python app.py), "
        "or from a docker-compose.yml (init --from-compose)",
        description="Write a starter spec that `faultbox check` accepts: the service, a healthcheck, a test "
        "and a fault. Arguments after -- are the command that runs the service.",
    )
    init.add_argument(
        "command_argv", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the command that runs the service"
    )
    init.add_argument("--name", help="the service's name (default: from the command)")
    init.add_argument("--port", type=int, help="the port the service listens on (default 8080)")
    init.add_argument("--protocol", choices=PROTOCOLS, default="http", help="the interface's protocol (default http)")
    init.add_argument(
        "--health", metavar="PATH", help="an HTTP path that answers 2xx once the service is up (/healthz)"
    )
    init.add_argument(
        "--from-compose",
        nargs="?",
        const="",
        metavar="FILE",
        help="translate a docker-compose.yml (default: docker-compose.yml or compose.yaml here)",
    )
    init.add_argument(
        "--output", "-o", metavar="FILE", help=f"where to write the spec (default ./{DEFAULT_OUTPUT}; - for stdout)"
    )
    init.add_argument("--force", action="store_true", help="overwrite the output file if it exists")


def command(args: argparse.Namespace) -> int:
    """Run `faultbox init`: every error is a message with a code, exit 1."""
    try:
        return _init(args)
    except FaultboxError as exc:
        print(exc.render(), file=sys.stderr)
        return ExitCode.USAGE


def _init(args: argparse.Namespace) -> int:
    if args.command_argv[:1] == ["--"]:
        args.command_argv = args.command_argv[1:]
    output = args.output or DEFAULT_OUTPUT
    to_stdout = output == "-"
    spec_dir = os.getcwd() if to_stdout else os.path.dirname(os.path.abspath(output))
    if args.from_compose is not None:
        for flag, value in (("--name", args.name), ("--port", args.port), ("--health", args.health)):
            if value is not None:
                raise UsageError(
                    f"{flag} is for a command's spec; --from-compose takes the services from the compose file",
                    "drop " + flag,
                )
        if args.command_argv:
            raise UsageError(
                f"a command ({shlex.join(args.command_argv)}) and --from-compose: give one of the two",
                "faultbox init --from-compose FILE, or faultbox init --port 8080 -- COMMAND",
            )
        from faultbox.cli.compose import find_compose, load_compose, translate

        source = find_compose(args.from_compose or None)
        result = translate(load_compose(source), spec_dir, os.path.basename(source))
        _write(output, result.text, args.force)
        if not to_stdout:
            print(f"wrote {output} from {source} ({result.services} services)", file=sys.stderr)
        if result.attention:
            print(
                f"needs your attention ({len(result.attention)}, also listed at the end of the spec):", file=sys.stderr
            )
            for i, note in enumerate(result.attention, 1):
                print(f"  {i}. {note}", file=sys.stderr)
        if not to_stdout:
            print(f"next: faultbox check {output}", file=sys.stderr)
        return ExitCode.OK
    if not args.command_argv:
        raise UsageError(
            "name the command that runs the service, after --, or translate a compose file",
            "faultbox init --name api --port 8080 -- python app.py   (or: faultbox init --from-compose)",
        )
    port = args.port if args.port is not None else _port_in(args.command_argv)
    if port is None:
        port = 8080
        print("no --port: the spec assumes the service listens on 8080", file=sys.stderr)
    text = command_spec(
        args.command_argv,
        name=args.name,
        port=port,
        protocol=args.protocol,
        health=args.health,
        spec_dir=spec_dir,
        workdir=os.getcwd(),
        output=output,
    )
    _write(output, text, args.force)
    if not to_stdout:
        print(f"wrote {output}", file=sys.stderr)
        print(f"next: faultbox check {output}, then faultbox test {output}", file=sys.stderr)
    return ExitCode.OK


def _port_in(argv: list[str]) -> int | None:
    """The port a command names with --port N (or --port=N), as most servers take it."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--port" and i + 1 < len(argv) else arg.removeprefix("--port=")
        if (arg == "--port" or arg.startswith("--port=")) and value.isdigit():
            return int(value)
    return None


def _refuse_existing(output: str) -> None:
    raise UsageError(
        f"{output} already exists; faultbox init does not overwrite a spec",
        "name another file with --output FILE (or --output - for stdout), or pass --force to replace it",
    )


def _write(output: str, text: str, force: bool) -> None:
    """The spec written to `output` (- is stdout); an existing file only with `force`."""
    if output == "-":
        sys.stdout.write(text)
        return
    if os.path.isdir(output):
        raise UsageError(f"--output {output} is a directory", "name a file, e.g. --output specs/api.star")
    if os.path.lexists(output) and not force:
        _refuse_existing(output)
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise UsageError(
            f"--output {output}: the directory {directory} does not exist", "create it, or name another file"
        )
    try:
        # "x": a file that appeared since the check is still not overwritten.
        with open(output, "w" if force else "x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        _refuse_existing(output)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}", "name a file you can write") from None


def default_name(argv: list[str]) -> str:
    """A service name from its command: the script an interpreter runs (app.py -> app), or the binary."""
    program = os.path.basename(argv[0])
    candidate = program
    if re.sub(r"[\d.]+$", "", program) in _INTERPRETERS:
        rest = argv[1:]
        if "-m" in rest and rest.index("-m") + 1 < len(rest):
            candidate = rest[rest.index("-m") + 1]  # python -m http.server -> http_server
        else:
            candidate = next((os.path.splitext(os.path.basename(a))[0] for a in rest if not a.startswith("-")), program)
    name = re.sub(r"[^A-Za-z0-9_-]", "_", candidate).strip("_-")
    if not name[:1].isalpha():
        name = "app" + ("_" + name if name else "")
    return "app" if name == "test" else name


def command_spec(
    argv: list[str],
    *,
    name: str | None = None,
    port: int = 8080,
    protocol: str = "http",
    health: str | None = None,
    spec_dir: str | None = None,
    workdir: str | None = None,
    output: str = DEFAULT_OUTPUT,
) -> str:
    """The starter spec for one service run by `argv` in `workdir`, written to `spec_dir`."""
    from faultbox.cli.compose import _lit
    from faultbox.spec.builtins import universe_names

    spec_dir = spec_dir or os.getcwd()
    workdir = workdir or os.getcwd()
    name = name or default_name(argv)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name) or name == "test":
        raise UsageError(
            f"--name {name!r}: a service name is letters, digits, '_' and '-', starting with a letter (not 'test')",
            "e.g. --name api",
        )
    if not 0 < port < 65536:
        raise UsageError(f"--port {port}: a port is 1..65535", "e.g. --port 8080")
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol {protocol}: choose one of {', '.join(PROTOCOLS)}", "e.g. --protocol http")
    if health is not None:
        if protocol != "http":
            raise UsageError(
                "--health is an HTTP path, and a tcp service's healthcheck is a connect",
                "drop --health, or --protocol http",
            )
        if not health.startswith("/"):
            health = "/" + health
    program = argv[0]
    if "/" in program:
        full = os.path.join(workdir, program)
        if not os.path.isfile(full):
            raise UsageError(f"the command {program} does not exist (looked at {full})", "fix the path")
        if not os.access(full, os.X_OK):
            raise UsageError(
                f"the command {program} is not executable", f"chmod +x {program}, or run it with its interpreter"
            )
    elif shutil.which(program) is None:
        raise UsageError(f'the command "{program}" is not on PATH', "install it, or give its path")
    var = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if var in universe_names() or var.startswith("test_"):
        var += "_svc"
    cwd = os.path.relpath(workdir, spec_dir)
    addr = f"127.0.0.1:{port}"
    http_ = protocol == "http"
    path = health or "/"
    lines = [
        f"# faultbox spec for {name}, written by `faultbox init`.",
        "#",
        f"#   faultbox check {output}    load it, list its services and tests (starts nothing)",
        f"#   faultbox test {output}     start {name} for every test, run the tests, report",
        "#",
        "# The language: docs/spec-language.md. Faults: docs/faults.md (syscall faults) and",
        "# docs/protocol-faults.md (faults in the proxy in front of an interface). A walkthrough:",
        "# docs/tutorial.md.",
        "",
        "# --- the service " + "-" * 82,
        "# faultbox runs this command fresh for every test, waits for its healthcheck, and stops it after",
        "# the test. Its interface gets a fault proxy in front of it: the steps below go through it.",
        f"{var} = service({_lit(name)},",
        f'    {_lit(program)}, interface("main", {_lit(protocol)}, {port}),',
    ]
    if len(argv) > 1:
        lines.append(f"    args = [{', '.join(_lit(a) for a in argv[1:])}],")
    if cwd != ".":
        lines.append(f"    cwd = {_lit(cwd)},  # where the command runs, from this file's directory")
    lines += [
        f'    env = {{"PORT": "{port}"}},  # in case it reads its port from the environment',
        (
            f"    healthcheck = http({_lit(addr + health)}),"
            if health
            else f"    healthcheck = tcp({_lit(addr)}),  # --health /PATH checks an HTTP path instead"
        ),
        '    # observe = [observe.stdout(decoder = decoder("json"))],  # its JSON log lines as events',
        ")",
        "",
        "# --- a test: a step against the interface, and an assertion " + "-" * 38,
        "",
    ]
    if http_:
        lines += [
            f"def {var}_request():",
            f"    return {var}.main.get(path = {_lit(path)})",
            "",
            f"def test_{var}_answers():",
            f"    r = {var}_request()",
            (
                "    assert_eq(r.status, 200)"
                if health
                else f'    assert_true(r.ok and r.status < 500, "{name} answered " + str(r.status))'
            ),
        ]
    else:
        lines += [
            f"def {var}_request():",
            "    # TODO: a line your service answers; send() returns the reply line (and fails the test without one)",
            f'    return {var}.main.send(data = "PING")',
            "",
            f"def test_{var}_answers():",
            f"    reply = {var}_request()",
            f'    assert_true(len(reply) > 0, "{name} answered nothing")',
        ]
    slow = f"{var}_slow_writes"
    lines += [
        "",
        "# --- a fault " + "-" * 86,
        f"# A named failure mode: every write {name} makes (to a file or a socket: its replies too) waits",
        "# 100ms first. A fault_assumption can carry monitors (invariants), and fault_matrix() runs every",
        "# scenario under every assumption.",
        f"{slow} = fault_assumption({_lit(slow)},",
        f"    description = {_lit(f'every write of {name} waits 100ms')},",
        f"    target = {var},",
        '    write = delay("100ms"),',
        '    sendto = delay("100ms"),',
        ")",
        "",
        f"# The test test_{var}_answers_when_slow: {var}_request() under the fault, then expect.",
        f"fault_scenario({_lit(var + '_answers_when_slow')},",
        f"    scenario = {var}_request,",
        f"    faults = {slow},",
    ]
    if http_:
        lines.append("    expect = lambda r: assert_true(r.ok and r.status < 500),")
    else:
        lines.append("    expect = lambda reply: assert_true(len(reply) > 0),")
    lines += [")", "", "# More:"]
    if http_:
        lines += [
            f'#   fault({var}.main, error(path = "/**", status = 503), run = {var}_request)   # a 503 from the proxy',
            f'#   fault({var}, connect = deny("ECONNREFUSED"), run = {var}_request)  # its outgoing connects refused',
        ]
    else:
        lines.append(
            f'#   fault({var}, connect = deny("ECONNREFUSED"), run = {var}_request)  # its outgoing connects refused'
        )
    lines += [
        f'#   fault({var}, fsync = deny("EIO"), run = {var}_request)   # a disk that fails',
        "#   partition(a, b, run = ...), fault_matrix(...), faultbox recipes list: docs/spec-language.md",
    ]
    return "\n".join(lines) + "\n"
