"""Starlark's own builtins (print, fail, struct, json, type, str/repr, getattr/hasattr, load) and the
test-flow ones (sleep, halt, parallel)."""

from __future__ import annotations

import json
import os
import re
import sys
import zlib
from typing import Any

from faultbox.errors import Halted, SourceLocation, SpecFailure
from faultbox.spec import host as host_mod
from faultbox.spec import interleavings as interleavings_mod
from faultbox.spec.args import SIZE_LIMIT, ArgError, check_arity, type_name
from faultbox.spec.builtins import builtin
from faultbox.spec.compile import current_location, current_module
from faultbox.spec.registry import SpecBuilder
from faultbox.spec.values import JSON_MODULE, InterfaceRef, ServiceValue, Struct, starlark_repr, starlark_str


def _getattr(value: Any, name: str, *default: Any) -> Any:
    if not isinstance(name, str):
        raise ArgError(f"getattr(): attribute name must be a string, got {type_name(name)}")
    if name.startswith("_"):
        if default:
            return default[0]
        raise ArgError(f"getattr(): attributes beginning with '_' are not accessible ({name!r})")
    return getattr(value, name, *default)


def _hasattr(value: Any, name: str) -> bool:
    return isinstance(name, str) and not name.startswith("_") and hasattr(value, name)


def _dir(value: Any) -> list[str]:
    return sorted(a for a in dir(value) if not a.startswith("_"))


def _range(*args: Any) -> range:
    """Python's range, refusing more than SIZE_LIMIT numbers: a loop over billions never ends (and
    a C-level one, such as max(range(n)), cannot even be interrupted)."""
    numbers = range(*args)
    try:
        size = len(numbers)
    except OverflowError:
        size = SIZE_LIMIT + 1
    if size > SIZE_LIMIT:
        asked = ", ".join(str(a) if a.bit_length() <= 64 else "a huge number" for a in args)
        raise ArgError(
            f"range() of more than {SIZE_LIMIT:,} numbers (asked: range({asked}))",
            "a spec loops over a few values; check the bounds",
        )
    return numbers


def _hash(value: Any) -> int:
    """Deterministic across runs (Python's str hash is salted per process)."""
    if isinstance(value, str):
        return zlib.crc32(value.encode()) - (1 << 31)
    return hash(value)


PLAIN_VALUES: dict[str, Any] = {
    "None": None,
    "True": True,
    "False": False,
    "abs": abs,
    "all": all,
    "any": any,
    "bool": bool,
    "dict": dict,
    "enumerate": enumerate,
    "float": float,
    "int": int,
    "len": len,
    "list": list,
    "max": max,
    "min": min,
    "range": _range,
    "reversed": lambda seq: list(reversed(seq)),
    "sorted": sorted,
    "tuple": tuple,
    "zip": lambda *seqs: list(zip(*seqs, strict=False)),
    "chr": chr,
    "ord": ord,
    "str": starlark_str,
    "repr": starlark_repr,
    "type": type_name,
    "getattr": _getattr,
    "hasattr": _hasattr,
    "dir": _dir,
    "hash": _hash,
    "json": JSON_MODULE,
}


@builtin("print", "*values, sep: str = ' '")
def print_(builder: SpecBuilder, values: tuple[Any, ...], sep: str) -> None:
    text = sep.join(starlark_str(v) for v in values)
    host = host_mod.current()
    if host is not None:
        host.print(text)
    else:
        sys.stderr.write(f"[load] {text}\n")


@builtin("fail", "*values, sep: str = ' '")
def fail(builder: SpecBuilder, values: tuple[Any, ...], sep: str) -> None:
    raise SpecFailure(sep.join(starlark_str(v) for v in values) or "fail() called")


@builtin("halt", "reason: str = ''")
def halt(builder: SpecBuilder, reason: str) -> None:
    """Stop the test with the outcome "halted": neither pass nor fail (e.g. a precondition is false)."""
    host_mod.require("halt()")
    raise Halted(reason or "halt() called")


@builtin("struct", "**fields")
def struct(builder: SpecBuilder, fields: dict[str, Any]) -> Struct:
    return Struct(fields)


_SURROGATE = re.compile("[\ud800-\udfff]")


@builtin("bytes", "x: any")
def bytes_(builder: SpecBuilder, x: Any) -> bytes:
    """Starlark's bytes(): a string's UTF-8 encoding, bytes as they are, or a sequence of ints 0-255."""
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return _SURROGATE.sub("\ufffd", x).encode()  # as Starlark: what UTF-8 cannot hold is U+FFFD
    if isinstance(x, (list, tuple, range)):
        for i, item in enumerate(x):
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= 255:
                raise ArgError(
                    f"bytes(): element {i} is {starlark_repr(item)}, not a byte",
                    "each element must be an int from 0 to 255",
                )
        return bytes(x)
    raise ArgError(
        f"bytes(): cannot make bytes from a {type_name(x)}",
        'give a string (bytes("abc")), bytes, or a list of ints from 0 to 255 (bytes([104, 105]))',
    )


def _read(what: str, path: str) -> tuple[str, str]:
    """(full path, text) of a file relative to the directory of the spec file that calls `what`."""
    module = current_module()
    base = module.directory if module is not None else os.getcwd()
    full = os.path.normpath(os.path.join(base, path))
    try:
        with open(full, encoding="utf-8") as f:
            return full, f.read()
    except OSError as exc:
        raise ArgError(
            f"{what}(): cannot read {full}: {exc.strerror or exc}",
            "the path is relative to the directory of the spec file that calls it",
        ) from None
    except UnicodeDecodeError as exc:
        raise ArgError(f"{what}(): {full} is not UTF-8 text (byte {exc.start})", "save the file as UTF-8") from None


@builtin("load_file", "path: str")
def load_file(builder: SpecBuilder, path: str) -> str:
    """The text of a file, relative to the directory of the spec file that calls it."""
    full, text = _read("load_file", path)
    builder.data_files.append(full)  # a failure bundle carries the files a spec read
    return text


def _integral(text: str) -> int | float:
    number = float(text)
    return int(number) if number.is_integer() else number


@builtin("load_json", "path: str")
def load_json(builder: SpecBuilder, path: str) -> Any:
    """A JSON file's value, relative to the calling spec file's directory; integral numbers
    (`2.0`, `1e3`) become ints, as in the reference."""
    full, text = _read("load_json", path)
    builder.data_files.append(full)
    try:
        return json.loads(text, parse_float=_integral)
    except ValueError as exc:
        where = f" at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ArgError(
            f"load_json(): {full} is not JSON{where}: {msg}", "fix the file, or read it with load_file()"
        ) from None


@builtin("load_yaml", "path: str")
def load_yaml(builder: SpecBuilder, path: str) -> Any:
    """A YAML file's value (its first document), relative to the calling spec file's directory.
    Timestamps stay strings (Starlark has no time type); a map key that is not a string is refused."""
    import yaml  # type: ignore[import-untyped]

    full, text = _read("load_yaml", path)
    builder.data_files.append(full)
    try:
        value = yaml.load(text, Loader=_yaml_loader(yaml))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ArgError(f"load_yaml(): {full} is not YAML{where}: {problem}", "fix the file") from None
    _string_keys(value, full, "")
    return value


_YAML_LOADER: Any = None


def _yaml_loader(yaml: Any) -> Any:
    global _YAML_LOADER
    if _YAML_LOADER is None:

        class Loader(yaml.SafeLoader):  # type: ignore[misc]
            pass

        Loader.yaml_implicit_resolvers = {
            first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        _YAML_LOADER = Loader
    return _YAML_LOADER


def _string_keys(value: Any, full: str, at: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ArgError(
                    f"load_yaml(): {full}: the map at {at or 'the top'} has the key {starlark_repr(key)}, not a string",
                    f'quote the key ("{key}": ...)',
                )
            _string_keys(item, full, f"{at}.{key}" if at else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _string_keys(item, full, f"{at}[{i}]")


@builtin("var", "name: str, default: str? = None")
def var(builder: SpecBuilder, name: str, default: str | None) -> str | None:
    """A value given on the command line (`faultbox test spec.star --var name=value`), or default."""
    return builder.variables.get(name, default)


@builtin("sleep", "duration: duration")
def sleep(builder: SpecBuilder, duration: float) -> None:
    """Wait inside a test; a monitor violation or the test deadline ends the wait early."""
    if duration < 0:
        raise ArgError("sleep(): the duration must not be negative")
    host_mod.require("sleep()").sleep(duration)


@builtin("parallel", "*fns: callable, interleavings: any = 1")
def parallel(builder: SpecBuilder, fns: tuple[Any, ...], interleavings: Any) -> list[Any]:
    """Run the functions at the same time, each as its own client; their results in argument order.
    With interleavings= other than 1, the call is a fan-out site: each leaf runs it under one
    schedule of the services' cross-service steps (spec/interleavings.py, runner/schedule.py)."""
    host = host_mod.require("parallel()")
    if len(fns) < 2:
        raise ArgError(
            f"parallel() needs at least 2 functions, got {len(fns)}",
            "write parallel(lambda: svc.post(...), lambda: svc.post(...))",
        )
    for i, fn in enumerate(fns):
        check_arity(fn, 0, f"parallel(): fns[{i}]", "no arguments")
    location = current_location()
    site = site_key(location)
    options = interleavings_mod.schedules(interleavings, len(fns), host.run_seed, site)
    if not options:
        return host.run_parallel(list(fns))
    schedule = host.leaf.order(site, options, str(location or ""))
    return host.run_parallel(list(fns), schedule=schedule, site=site)


def site_key(location: SourceLocation | None) -> str:
    """A parallel() site's key: "file:line", the file's name alone (a leaf replays from any
    working directory)."""
    if location is None:
        return "parallel"
    return f"{os.path.basename(location.file)}:{location.line}"


@builtin("nondet", "*services: any")
def nondet(builder: SpecBuilder, services: tuple[Any, ...]) -> bool | None:
    """nondet(svc, ...): the services are never held by a scheduled parallel() of this test (their
    steps run as they come). nondet(): an anonymous choice of True or False, always True."""
    if not services:
        host = host_mod.current()
        if host is not None:
            location = current_location()
            host.leaf.choose("", [True, False], str(location or ""))
        return True
    names: list[str] = []
    for i, svc in enumerate(services):
        if isinstance(svc, InterfaceRef):
            names.append(svc.service)
        elif isinstance(svc, ServiceValue):
            names.append(svc.name)
        else:
            raise ArgError(
                f"nondet(): argument {i + 1} is a {type_name(svc)}, not a service",
                "write nondet(svc, ...) with services declared by service(), or nondet() for a choice",
            )
    host_mod.require("nondet(svc)").exempt_from_schedule(names)
    return None


@builtin("load", "module: str, *symbols: str, **aliases: str")
def load(builder: SpecBuilder, module: str, symbols: tuple[str, ...], aliases: dict[str, str]) -> None:
    """Bind symbols of another .star file into the calling module (DECISIONS §3)."""
    caller = current_module()
    if caller is None:
        raise ArgError("load() must be a top-level statement of a spec file")
    loader = caller.globals.get("__fb_loader__")
    if loader is None:
        raise ArgError("load() is not available here")
    target = loader.load(module, caller)
    exported = target.exported()
    wanted = {s: s for s in symbols} | aliases
    for local, remote in wanted.items():
        if remote not in exported:
            from faultbox._util.spell import did_you_mean

            names = ", ".join(sorted(n for n in exported if not n.startswith("_"))) or "nothing"
            raise ArgError(
                f'load(): "{module}" has no symbol {remote!r}{did_you_mean(remote, exported)}',
                f"it defines: {names}",
            )
        caller.globals[local] = exported[remote]


def namespaces(universe: dict[str, Any]) -> dict[str, Any]:
    """Dotted names built from plain builtins: observe.stdout / observe.stderr, match.event / any /
    all / never."""
    return {
        "observe": Struct({"stdout": universe["_observe_stdout"], "stderr": universe["_observe_stderr"]}),
        "match": Struct({part: universe[f"_match_{part}"] for part in ("event", "any", "all", "never")}),
    }
