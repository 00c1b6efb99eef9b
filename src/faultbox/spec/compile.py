"""Checked AST -> code -> a module's frozen globals, plus the helpers that map Python-level
exceptions back to spec lines.

Every compiled file is registered in SPEC_FILES, so a failure anywhere (a builtin's bad argument, a
KeyError in a monitor, a fail() in an expect lambda) is reported at the innermost spec line.
"""

from __future__ import annotations

import ast
import copy
import itertools
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType, TracebackType
from typing import Any

from faultbox._util.frozen import FrozenError, freeze
from faultbox._util.hints import WHERE_HINTS, WhereHint
from faultbox._util.spell import did_you_mean
from faultbox.errors import Code, FaultboxError, SourceLocation, SpecError, SpecFailure
from faultbox.spec.args import SIZE_LIMIT, ArgError, type_name
from faultbox.spec.dialect import CheckedModule

# filename -> source lines, for every compiled spec file
SPEC_FILES: dict[str, list[str]] = {}

MODULE_KEY = "__fb_module__"  # hidden global: spec code cannot name it (the resolver refuses it)
REPEAT_KEY = "__fb_repeat__"  # hidden global: what every `*` of spec code calls (_repeat)
_STDLIB = str(Path(__file__).resolve().parent.parent / "stdlib")


@dataclass
class Module:
    path: str  # absolute path of the .star file
    name: str  # as written in load(), or the root spec's path
    checked: CheckedModule
    globals: dict[str, Any] = field(default_factory=dict)

    @property
    def directory(self) -> str:
        import os

        return os.path.dirname(self.path)

    def exported(self) -> dict[str, Any]:
        """Top-level names this module binds (what load() may import)."""
        return {k: v for k, v in self.globals.items() if k in self.checked.top_level}


def compile_module(checked: CheckedModule) -> CodeType:
    SPEC_FILES[checked.filename] = checked.lines
    try:
        _guard_repetitions(checked.tree)
        code = compile(checked.tree, checked.filename, "exec", dont_inherit=True)
    except SyntaxError as exc:  # what the parser lets through: a keyword argument given twice
        line = exc.lineno or 0
        src = checked.lines[line - 1] if 0 < line <= len(checked.lines) else None
        raise SpecError(
            Code.SPEC_SYNTAX,
            f"syntax error: {exc.msg}",
            SourceLocation(checked.filename, line, exc.offset or 0),
            source_line=src,
        ) from None
    _attach_where_hints(checked.tree, code)
    return code


def execute(module: Module, code: CodeType, universe: Mapping[str, Any]) -> None:
    """Run a module's top level with the builtin universe, then freeze its globals (DECISIONS §2)."""
    module.globals.update(
        {"__builtins__": dict(universe), MODULE_KEY: module, REPEAT_KEY: _repeat, "__name__": module.name}
    )
    exec(code, module.globals)
    for name in module.checked.top_level:
        if name in module.globals:
            module.globals[name] = freeze(module.globals[name])


# -- repetition --------------------------------------------------------------------------------


def _guard_repetitions(tree: ast.Module) -> None:
    """Rewrite `a * b` and `a *= b` in place into calls of _repeat: Python builds `"ab" * 4000000000`
    (8 GB) in one C call that nothing can interrupt, so the size is checked before it starts.
    Without recursion (a spec may nest an expression hundreds deep): each node's fields are rewritten
    before its children are visited, so a rewritten node's operands are visited too."""
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        for name, value in ast.iter_fields(node):
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, ast.AST):
                        value[i] = _guarded(item)
                        todo.append(value[i])
            elif isinstance(value, ast.AST):
                guarded = _guarded(value)
                if guarded is not value:
                    setattr(node, name, guarded)
                todo.append(guarded)


def _guarded(node: ast.AST) -> ast.AST:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _repeat_call(node, node.left, node.right)
    if isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Mult) and isinstance(node.target, ast.Name):
        current = ast.copy_location(ast.Name(id=node.target.id, ctx=ast.Load()), node.target)
        return ast.copy_location(ast.Assign(targets=[node.target], value=_repeat_call(node, current, node.value)), node)
    return node  # (a *= on an element or attribute: the dialect's values are frozen there)


def _repeat_call(at: ast.AST, left: ast.expr, right: ast.expr) -> ast.Call:
    func = ast.copy_location(ast.Name(id=REPEAT_KEY, ctx=ast.Load()), at)
    return ast.copy_location(ast.Call(func=func, args=[left, right], keywords=[]), at)


def _repeat(a: Any, b: Any) -> Any:
    times, seq = (b, a) if isinstance(b, int) else (a, b)
    if isinstance(seq, (str, bytes, list, tuple)) and isinstance(times, int) and len(seq) * times > SIZE_LIMIT:
        raise ArgError(
            f"a repetition of more than {SIZE_LIMIT:,} items ({type_name(seq)} of {len(seq):,} * {times:,})",
            "a spec builds small values; check the count",
        )
    return a * b


# -- where= hints ------------------------------------------------------------------------------

_EVENT_MEMBERS = frozenset({
    "data", "fields", "get", "seq", "ts", "vclock", "describe", "to_dict", "has_native_data", "mirrored",
    "event_type", "timestamp",
    "happens_before", "happens_after", "concurrent_with", "same_service_as", "same_correlation_as",
    "duration_since", "directly_caused_by", "preceded_by", "followed_by", "preceded_by_within",
    "followed_by_within",
})  # fmt: skip


def _attach_where_hints(tree: ast.Module, code: CodeType) -> None:
    """Give every one-parameter lambda whose body is a conjunction of equalities an index hint
    (_util/hints.py). A lambda's code object is found by the position of its body."""
    lambdas = {
        (n.body.lineno, n.body.col_offset): n
        for n in ast.walk(tree)
        if isinstance(n, ast.Lambda) and len(n.args.args) == 1 and not n.args.defaults
    }
    if not lambdas:
        return
    pending = [code]
    while pending:
        co = pending.pop()
        pending.extend(c for c in co.co_consts if isinstance(c, CodeType))
        if co.co_name != "<lambda>":
            continue
        # The body's first instruction follows RESUME (and COPY_FREE_VARS for closures).
        lam = None
        for line, _, col, _ in itertools.islice(co.co_positions(), 6):
            lam = lambdas.get((line, col)) if line is not None and col is not None else None
            if lam is not None:
                break
        if lam is not None:
            hint = build_hint(lam, co.co_freevars, co.co_filename)
            if hint is not None:
                WHERE_HINTS[co] = hint


def build_hint(lam: ast.Lambda, freevars: tuple[str, ...], filename: str) -> WhereHint | None:
    param = lam.args.args[0].arg
    body = lam.body
    conjuncts = body.values if isinstance(body, ast.BoolOp) and isinstance(body.op, ast.And) else [body]
    static: list[tuple[str, str]] = []
    dynamic: list[tuple[str, CodeType]] = []
    data_keys: set[str] = set()
    complete = True
    for conjunct in conjuncts:
        parsed = _equality(conjunct, param)
        if parsed is None:
            complete = False
            continue
        key, via_data, rhs = parsed
        if isinstance(rhs, ast.Constant) and isinstance(rhs.value, str):
            static.append((key, rhs.value))
        elif _pure(rhs, param):
            dynamic.append((key, _rhs_code(rhs, freevars, filename)))
        else:
            complete = False
            continue
        if via_data:
            data_keys.add(key)
    if not static and not dynamic:
        return None
    return WhereHint(tuple(static), tuple(dynamic), frozenset(data_keys), complete)


def _equality(node: ast.AST, param: str) -> tuple[str, bool, ast.expr] | None:
    """(index key, compared through e.data, other side) for `<event accessor> == <expr>`."""
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq)):
        return None
    for accessor, other in ((node.left, node.comparators[0]), (node.comparators[0], node.left)):
        found = _accessor(accessor, param)
        if found is not None and not _mentions(other, param):
            return found[0], found[1], other
    return None


def _accessor(node: ast.AST, param: str) -> tuple[str, bool] | None:
    """Index key of an event accessor that never raises: "type"/"service", or ".<field>"."""

    def is_param(n: ast.AST) -> bool:
        return isinstance(n, ast.Name) and n.id == param

    if isinstance(node, ast.Attribute) and is_param(node.value):
        if node.attr in ("type", "service"):
            return node.attr, False
        if node.attr not in _EVENT_MEMBERS and not node.attr.startswith("_"):
            return "." + node.attr, False
        return None
    if isinstance(node, ast.Subscript) and is_param(node.value):
        key = node.slice
        if isinstance(key, ast.Constant) and key.value in ("type", "service"):
            return str(key.value), False
        return None  # e["x"] raises when x is missing: keep the lambda the judge
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        name = node.args[0].value
        owner = node.func.value
        if is_param(owner):
            return (name, False) if name in ("type", "service") else ("." + name, False)
        if isinstance(owner, ast.Attribute) and is_param(owner.value) and owner.attr in ("data", "fields"):
            return "." + name, owner.attr == "data"
    return None


def _mentions(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))


def _pure(node: ast.AST, param: str) -> bool:
    """Expressions safe to evaluate ahead of the lambda: names, constants, attribute and constant
    subscript reads, `.get(<constant>)`, and string concatenation."""
    if isinstance(node, ast.Name):
        return node.id != param
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Attribute):
        return not node.attr.startswith("_") and _pure(node.value, param)
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and _pure(node.value, param)
    if isinstance(node, ast.Call):
        return (
            isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and not node.keywords
            and all(isinstance(a, ast.Constant) for a in node.args)
            and _pure(node.func.value, param)
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _pure(node.left, param) and _pure(node.right, param)
    return False


def _rhs_code(rhs: ast.expr, freevars: tuple[str, ...], filename: str) -> CodeType:
    """A function of the lambda's free variables (in closure order) that computes `rhs`."""
    args = ast.arguments(
        posonlyargs=[], args=[ast.arg(arg=n) for n in freevars], kwonlyargs=[], kw_defaults=[], defaults=[]
    )
    fn = ast.FunctionDef(name="__fb_hint__", args=args, body=[ast.Return(value=copy.deepcopy(rhs))], decorator_list=[])
    module = ast.Module(body=[fn], type_ignores=[])
    ast.fix_missing_locations(module)
    code = compile(module, filename, "exec", dont_inherit=True)
    return next(c for c in code.co_consts if isinstance(c, CodeType))


# -- locating errors in spec code --------------------------------------------------------------


def is_spec_file(filename: str) -> bool:
    return filename in SPEC_FILES


def current_location(depth: int = 1) -> SourceLocation | None:
    """The innermost line of the user's spec on the current call stack (a stdlib helper's own line
    only when no user line is there: `postgres("db")` is reported where the user wrote it)."""
    frame: FrameType | None = sys._getframe(depth)
    fallback: SourceLocation | None = None
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename in SPEC_FILES:
            here = SourceLocation(filename, frame.f_lineno)
            if not filename.startswith(_STDLIB):
                return here
            fallback = fallback or here
        frame = frame.f_back
    return fallback


def current_module(depth: int = 1) -> Module | None:
    """The spec module whose code is running innermost on the stack."""
    frame: FrameType | None = sys._getframe(depth)
    while frame is not None:
        module = frame.f_globals.get(MODULE_KEY)
        if isinstance(module, Module):
            return module
        frame = frame.f_back
    return None


def location_of(exc: BaseException) -> SourceLocation | None:
    """The innermost spec frame in an exception's traceback (as current_location: a stdlib helper's
    own line only when no user line is there)."""
    found: SourceLocation | None = None
    fallback: SourceLocation | None = None
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename in SPEC_FILES:
            if filename.startswith(_STDLIB):
                fallback = SourceLocation(filename, tb.tb_lineno)
            else:
                found = SourceLocation(filename, tb.tb_lineno)
        tb = tb.tb_next
    return found or fallback


def source_line(loc: SourceLocation | None) -> str | None:
    if loc is None:
        return None
    lines = SPEC_FILES.get(loc.file)
    if lines and 0 < loc.line <= len(lines):
        return lines[loc.line - 1]
    return None


def function_source(fn: Any) -> tuple[SourceLocation | None, str]:
    """Where a spec function was defined, and how it was written there: a lambda from `lambda` to
    where its brackets close (the lambda passed as an argument, without the call around it), else
    its first line. (None, "") for what is not spec code."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return None, ""
    where = SourceLocation(code.co_filename, code.co_firstlineno)
    text = (source_line(where) or "").strip()
    if "lambda" in text:
        text = text[text.find("lambda") :]
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                text = text[:i]
                break
    return where, text.rstrip().rstrip(",")


def describe_exception(exc: BaseException) -> tuple[str, str]:
    """(message, "file:line") for any exception raised by spec code, in the spec's terms."""
    loc = getattr(exc, "fb_location", None) or location_of(exc)
    return exception_message(exc), str(loc) if loc else ""


_NONE_HINT = " (a value is None here; a step that failed returns .data = None, so check .ok or .error first)"


def exception_message(exc: BaseException) -> str:
    message = _exception_message(exc)
    if isinstance(exc, (TypeError, AttributeError)) and "NoneType" in message:
        return message + _NONE_HINT
    return message


def _exception_message(exc: BaseException) -> str:
    if isinstance(exc, (SpecFailure, FaultboxError, FrozenError)):
        return str(exc)
    if isinstance(exc, AttributeError):
        obj = getattr(exc, "obj", None)
        name = getattr(exc, "name", None)
        if obj is not None and name and str(exc).startswith("'"):  # Python's own wording: say it ours
            from faultbox.spec.args import type_name

            options = [a for a in dir(obj) if not a.startswith("_")]
            return f"{type_name(obj)} has no attribute {name!r}{did_you_mean(name, options)}"
        return str(exc)
    if isinstance(exc, KeyError):
        return f"key not found: {exc}" if type(exc) is KeyError else str(exc)
    if isinstance(exc, RecursionError):
        return "recursion is not allowed in Starlark (a function called itself)"
    if isinstance(exc, ZeroDivisionError):
        return "division by zero"
    if isinstance(exc, MemoryError):
        return 'out of memory: a value here is too large to build (a huge repetition such as "x" * n?)'
    if isinstance(exc, (TypeError, ValueError, IndexError)):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"


def as_spec_error(exc: BaseException, fallback: SourceLocation | None = None) -> SpecError:
    """A load-time failure of any kind, as a SpecError at its spec line."""
    from faultbox.errors import Code

    if isinstance(exc, SpecError):
        return exc
    loc = getattr(exc, "fb_location", None) or location_of(exc) or fallback
    if isinstance(exc, FaultboxError):  # ArgError, DurationError, FrozenError, ...: their own code
        return SpecError(exc.code, exception_message(exc), loc, exc.hint, source_line(loc))
    return SpecError(Code.SPEC_LOAD_FAILED, exception_message(exc), loc, None, source_line(loc))


__all__ = [
    "SPEC_FILES",
    "Module",
    "as_spec_error",
    "compile_module",
    "current_location",
    "current_module",
    "describe_exception",
    "execute",
    "location_of",
]
