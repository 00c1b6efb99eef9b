"""Checked AST -> code -> a module's frozen globals, plus the helpers that map Python-level
exceptions back to spec lines.

Every compiled file is registered in SPEC_FILES, so a failure anywhere (a builtin's bad argument, a
KeyError in a monitor, a fail() in an expect lambda) is reported at the innermost spec line.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import CodeType, FrameType, TracebackType
from typing import Any

from faultbox._util.frozen import FrozenError, freeze
from faultbox._util.hints import WHERE_HINTS
from faultbox._util.spell import did_you_mean
from faultbox.errors import SourceLocation, SpecError, SpecFailure
from faultbox.spec.args import ArgError
from faultbox.spec.dialect import CheckedModule

# filename -> source lines, for every compiled spec file
SPEC_FILES: dict[str, list[str]] = {}

MODULE_KEY = "__fb_module__"  # hidden global: spec code cannot name it (the resolver refuses it)


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
    code = compile(checked.tree, checked.filename, "exec", dont_inherit=True)
    _attach_where_hints(checked.tree, code)
    return code


def execute(module: Module, code: CodeType, universe: Mapping[str, Any]) -> None:
    """Run a module's top level with the builtin universe, then freeze its globals (DECISIONS §2)."""
    module.globals.update({"__builtins__": dict(universe), MODULE_KEY: module, "__name__": module.name})
    exec(code, module.globals)
    for name in module.checked.top_level:
        if name in module.globals:
            module.globals[name] = freeze(module.globals[name])


# -- where= hints ------------------------------------------------------------------------------


def _attach_where_hints(tree: ast.Module, code: CodeType) -> None:
    """Record `lambda e: e.type == "x" and ...` conjuncts so trace queries can use an index.

    A lambda's code object is found by the position of its body, which is the first instruction
    position after the code's RESUME."""
    hints: dict[tuple[int, int], dict[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Lambda):
            hint = lambda_hint(node)
            if hint:
                hints[(node.body.lineno, node.body.col_offset)] = hint
    if not hints:
        return
    pending = [code]
    while pending:
        co = pending.pop()
        pending.extend(c for c in co.co_consts if isinstance(c, CodeType))
        if co.co_name != "<lambda>":
            continue
        positions = list(co.co_positions())[1:2]
        if positions and positions[0][0] is not None and positions[0][2] is not None:
            hint = hints.get((positions[0][0], positions[0][2]))
            if hint:
                WHERE_HINTS[co] = hint


def lambda_hint(lam: ast.Lambda) -> dict[str, str] | None:
    """{"type": "wal"} for `lambda e: e.type == "wal" and ...`, else None."""
    if len(lam.args.args) != 1:
        return None
    param = lam.args.args[0].arg
    body = lam.body
    conjuncts = body.values if isinstance(body, ast.BoolOp) and isinstance(body.op, ast.And) else [body]
    hint: dict[str, str] = {}
    for c in conjuncts:
        if not (isinstance(c, ast.Compare) and len(c.ops) == 1 and isinstance(c.ops[0], ast.Eq)):
            continue
        left, right = c.left, c.comparators[0]
        if isinstance(left, ast.Constant):
            left, right = right, left
        if not (isinstance(right, ast.Constant) and isinstance(right.value, str)):
            continue
        key = _event_key(left, param)
        if key in ("type", "service") and key not in hint:
            hint[key] = right.value
    return hint or None


def _event_key(node: ast.AST, param: str) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == param:
        return node.attr
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == param
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    ):
        return node.slice.value
    return None


# -- locating errors in spec code --------------------------------------------------------------


def is_spec_file(filename: str) -> bool:
    return filename in SPEC_FILES


def current_location(depth: int = 1) -> SourceLocation | None:
    """The innermost spec line on the current call stack."""
    frame: FrameType | None = sys._getframe(depth)
    while frame is not None:
        if frame.f_code.co_filename in SPEC_FILES:
            return SourceLocation(frame.f_code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return None


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
    """The innermost spec frame in an exception's traceback."""
    found: SourceLocation | None = None
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in SPEC_FILES:
            found = SourceLocation(tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def source_line(loc: SourceLocation | None) -> str | None:
    if loc is None:
        return None
    lines = SPEC_FILES.get(loc.file)
    if lines and 0 < loc.line <= len(lines):
        return lines[loc.line - 1]
    return None


def describe_exception(exc: BaseException) -> tuple[str, str]:
    """(message, "file:line") for any exception raised by spec code, in the spec's terms."""
    loc = getattr(exc, "fb_location", None) or location_of(exc)
    return exception_message(exc), str(loc) if loc else ""


def exception_message(exc: BaseException) -> str:
    if isinstance(exc, (SpecFailure, ArgError, FrozenError, SpecError)):
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
    if isinstance(exc, (TypeError, ValueError, IndexError)):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"


def as_spec_error(exc: BaseException, fallback: SourceLocation | None = None) -> SpecError:
    """A load-time failure of any kind, as a SpecError at its spec line."""
    from faultbox.errors import Code

    if isinstance(exc, SpecError):
        return exc
    loc = getattr(exc, "fb_location", None) or location_of(exc) or fallback
    hint = getattr(exc, "hint", None)
    code = Code.SPEC_BAD_ARGUMENT if isinstance(exc, ArgError) else Code.SPEC_LOAD_FAILED
    if isinstance(exc, FrozenError):
        code = Code.SPEC_FROZEN
    return SpecError(code, exception_message(exc), loc, hint, source_line(loc))


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
