"""The one argument checker for every builtin.

A builtin declares its parameters in a compact signature string:

    "name: str, *interfaces, binary: str? = None, env: strdict = {}, depends_on: list = []"

`*rest` collects extra positionals, `**rest` extra keywords; parameters after `*` (or `*rest`) are
keyword-only. A type ending in `?` also accepts None. Defaults are Python literals. Unknown keywords
are refused with the list of valid ones and a spelling suggestion; a wrong type names the parameter,
the expected type and what was given. Builtin bodies then get plain, already-checked values.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from faultbox._util.durations import DurationError, parse_duration
from faultbox._util.spell import did_you_mean
from faultbox.errors import Code, FaultboxError

# The most numbers range() may count, or characters or items a repetition (`"ab" * n`) may build: a
# spec builds small values, and a huge one is built in a C call nothing can interrupt.
SIZE_LIMIT = 10_000_000


class ArgError(FaultboxError):
    """A builtin was called with bad arguments or values; the caller adds the spec location."""

    code = Code.SPEC_BAD_ARGUMENT


_TYPE_NAMES: dict[type, str] = {}


def register_type_name(cls: type, name: str) -> None:
    """Give a value class its Starlark-facing type name (what `type(x)` returns)."""
    _TYPE_NAMES[cls] = name


def type_name(value: object) -> str:
    """The Starlark-facing name of a value's type."""
    named = _TYPE_NAMES.get(type(value))
    if named is not None:
        return named
    if value is None:
        return "NoneType"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    if isinstance(value, tuple):
        return "tuple"
    if isinstance(value, dict):
        return "dict"
    if callable(value):
        return "function"
    return type(value).__name__


def _is_str(v: object) -> bool:
    return isinstance(v, str)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_list(v: object) -> bool:
    return isinstance(v, (list, tuple))


def _is_strlist(v: object) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)


def _is_strdict(v: object) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())


def _is_duration(v: object) -> bool:
    return isinstance(v, str)


# type name -> (check, description shown in errors)
_TYPES: dict[str, tuple[Callable[[object], bool], str]] = {
    "any": (lambda v: True, "any value"),
    "str": (_is_str, "a string"),
    "int": (_is_int, "an int"),
    "num": (_is_num, "a number"),
    "bool": (lambda v: isinstance(v, bool), "a bool"),
    "list": (_is_list, "a list"),
    "strlist": (_is_strlist, "a list of strings"),
    "dict": (lambda v: isinstance(v, dict), "a dict"),
    "strdict": (_is_strdict, "a dict of string to string"),
    "callable": (callable, "a function"),
    "duration": (_is_duration, 'a duration string such as "500ms" or "2s"'),
}


def register_type(name: str, check: Callable[[object], bool], description: str) -> None:
    """Let a builtin module add a value type (e.g. "service") to signatures."""
    _TYPES[name] = (check, description)


def signature_types() -> dict[str, str]:
    """Every type a signature may name, with its description (what editor stubs document)."""
    return {name: description for name, (_check, description) in _TYPES.items()}


def registered_type_names() -> dict[type, str]:
    """Value classes and their Starlark-facing type names."""
    return dict(_TYPE_NAMES)


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: str = "any"
    optional_none: bool = False
    default: Any = None
    required: bool = True
    kw_only: bool = False
    default_text: str | None = None  # the default as written in the signature (editor stubs show it)


@dataclass(frozen=True)
class Signature:
    name: str
    params: tuple[Param, ...]
    varargs: str | None
    varkw: str | None
    varargs_type: str = "any"
    varkw_type: str = "any"

    @classmethod
    def parse(cls, name: str, text: str) -> Signature:
        params: list[Param] = []
        varargs = varkw = None
        varargs_type = varkw_type = "any"
        kw_only = False
        for raw in _split_params(text):
            part = raw.strip()
            if not part:
                continue
            if part == "*":
                kw_only = True
                continue
            if part.startswith("**"):
                varkw, varkw_type = _name_and_type(part[2:])
                continue
            if part.startswith("*"):
                varargs, varargs_type = _name_and_type(part[1:])
                kw_only = True
                continue
            default_text = None
            if "=" in part:
                part, default_text = (s.strip() for s in part.split("=", 1))
            pname, ptype = _name_and_type(part)
            optional_none = ptype.endswith("?")
            ptype = ptype.rstrip("?")
            if ptype not in _TYPES:
                raise ValueError(f"unknown parameter type {ptype!r} in signature of {name}")
            default = ast.literal_eval(default_text) if default_text is not None else None
            if ptype == "duration" and isinstance(default, str):
                default = parse_duration(default)
            params.append(
                Param(
                    name=pname,
                    type=ptype,
                    optional_none=optional_none,
                    default=default,
                    required=default_text is None,
                    kw_only=kw_only,
                    default_text=default_text,
                )
            )
        return cls(name, tuple(params), varargs, varkw, varargs_type, varkw_type)

    @property
    def keyword_names(self) -> list[str]:
        return [p.name for p in self.params]

    def bind(self, args: Sequence[object], kwargs: Mapping[str, object]) -> dict[str, Any]:
        """Check a call and return the bound values (defaults filled in, durations in seconds)."""
        bound: dict[str, Any] = {}
        positional = [p for p in self.params if not p.kw_only]
        extra: list[object] = []
        for i, value in enumerate(args):
            if i < len(positional):
                bound[positional[i].name] = value
            elif self.varargs:
                extra.append(value)
            else:
                limit = len(positional)
                raise ArgError(
                    f"{self.name}() takes {limit} positional argument{'s' if limit != 1 else ''} "
                    f"but {len(args)} were given; pass the others by keyword"
                )
        extra_kw: dict[str, object] = {}
        names = self.keyword_names
        for key, value in kwargs.items():
            if key in bound:
                raise ArgError(f"{self.name}() got two values for argument {key!r}")
            if key in names:
                bound[key] = value
            elif self.varkw:
                extra_kw[key] = value
            else:
                valid = ", ".join(names) or "none"
                raise ArgError(
                    f"{self.name}() got an unknown keyword argument {key!r}{did_you_mean(key, names)}; "
                    f"valid keywords: {valid}"
                )
        for p in self.params:
            if p.name not in bound:
                if p.required:
                    how = "keyword " if p.kw_only else ""
                    raise ArgError(f"{self.name}() is missing its required {how}argument {p.name!r}")
                bound[p.name] = _copy_default(p.default)
                continue
            bound[p.name] = self._check(p.name, p.type, p.optional_none, bound[p.name])
        if self.varargs:
            bound[self.varargs] = tuple(
                self._check(f"{self.varargs}[{i}]", self.varargs_type, False, v) for i, v in enumerate(extra)
            )
        if self.varkw:
            bound[self.varkw] = {k: self._check(k, self.varkw_type, False, v) for k, v in extra_kw.items()}
        return bound

    def _check(self, pname: str, ptype: str, optional_none: bool, value: object) -> Any:
        if value is None and optional_none:
            return None
        check, description = _TYPES[ptype]
        if not check(value):
            hint = None
            if ptype == "callable":
                hint = "pass the function itself (or a lambda), not the result of calling it"
            raise ArgError(
                f"{self.name}(): {pname} must be {description}, got {type_name(value)} {_preview(value)}", hint
            )
        if ptype == "duration":
            try:
                return parse_duration(str(value))
            except DurationError as exc:
                raise ArgError(f"{self.name}(): {pname}: {exc}") from None
        return value


def _copy_default(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def _name_and_type(text: str) -> tuple[str, str]:
    if ":" in text:
        name, typ = (s.strip() for s in text.split(":", 1))
        return name, typ
    return text.strip(), "any"


def _split_params(text: str) -> list[str]:
    """Split on commas outside brackets and quotes (defaults may be "[]" or "{}")."""
    out: list[str] = []
    depth = 0
    quote = ""
    current: list[str] = []
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(current))
            current = []
            continue
        current.append(ch)
    out.append("".join(current))
    return out


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def check_arity(fn: Any, nargs: int, what: str, called_with: str) -> None:
    """Refuse a spec function that cannot be called with `nargs` positional arguments, at load time
    (instead of a TypeError when a test calls it). Functions without a readable signature pass."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*([None] * nargs))
    except TypeError:
        params = ", ".join(sig.parameters)
        name = getattr(fn, "__name__", "the function")
        shown = "a lambda" if name == "<lambda>" else name
        wanted = "no parameters" if nargs == 0 else f"exactly {nargs} parameter{'s' if nargs > 1 else ''}"
        raise ArgError(
            f"{what}: {shown}({params}) cannot be called with {called_with}",
            f"give it {wanted} (or defaults for the others)",
        ) from None
