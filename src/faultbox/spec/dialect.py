"""The Starlark gate (DECISIONS §1).

Specs are parsed with CPython's `ast` (Starlark's syntax is a subset of Python's). This module
refuses every construct Starlark lacks, with `file:line:col` and a one-line fix, and resolves names
statically: a name that is neither local, a top-level binding, a `load()`ed symbol nor a builtin is
an error before anything runs.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass, field

from faultbox._util.spell import suggest
from faultbox.errors import Code, SourceLocation, SpecError

# node type -> (what it is, how to write it in Starlark)
_REFUSED: dict[type[ast.AST], tuple[str, str]] = {
    ast.While: ("`while` loops", "use `for i in range(n):` inside a function"),
    ast.ClassDef: ("`class`", "use struct(...) for records and functions for behaviour"),
    ast.Import: ("`import`", 'use load("file.star", "name") to share code between specs'),
    ast.ImportFrom: ("`import`", 'use load("file.star", "name") to share code between specs'),
    ast.Try: ("`try`", "Starlark has no exceptions; check values with if, fail with fail()"),
    ast.With: ("`with`", "use fault(service, run=fn, ...) to scope a fault"),
    ast.AsyncWith: ("`async with`", "Starlark has no async; call functions directly"),
    ast.AsyncFor: ("`async for`", "Starlark has no async; use a plain for loop"),
    ast.AsyncFunctionDef: ("`async def`", "Starlark has no async; use def"),
    ast.Await: ("`await`", "Starlark has no async; call functions directly"),
    ast.Global: ("`global`", "top-level names are bound once; return new values from functions instead"),
    ast.Nonlocal: ("`nonlocal`", "return new values from the inner function instead"),
    ast.Raise: ("`raise`", 'use fail("message")'),
    ast.Assert: ("the `assert` statement", "use assert_true(cond, msg) or assert_eq(a, b)"),
    ast.Delete: ("`del`", "build a new list or dict without the item"),
    ast.Yield: ("`yield`", "return a list instead of generating values"),
    ast.YieldFrom: ("`yield from`", "return a list instead of generating values"),
    ast.NamedExpr: ("the walrus operator `:=`", "assign on its own line"),
    ast.JoinedStr: ("f-strings", 'use "%s" % value, "{}".format(value) or string concatenation'),
    ast.Set: ("set literals", "use a list, or a dict with the items as keys"),
    ast.SetComp: ("set comprehensions", "use a list or dict comprehension"),
    ast.GeneratorExp: ("generator expressions", "use a list comprehension: [x for x in xs]"),
    ast.Match: ("`match`", "use if/elif chains"),
    ast.AnnAssign: ("type annotations", "drop the annotation: `x = value`"),
}

_TOP_LEVEL_CONTROL: dict[type[ast.AST], str] = {
    ast.If: "`if` at top level",
    ast.For: "`for` at top level",
}


@dataclass
class LoadStatement:
    module: str
    symbols: dict[str, str]  # local name -> exported name
    location: SourceLocation


@dataclass
class CheckedModule:
    tree: ast.Module
    filename: str
    lines: list[str]
    top_level: dict[str, int] = field(default_factory=dict)  # name -> line of its binding
    loads: list[LoadStatement] = field(default_factory=list)


class _Errors:
    def __init__(self, filename: str, lines: list[str]) -> None:
        self.filename = filename
        self.lines = lines
        self.items: list[SpecError] = []

    def add(self, node: ast.AST, code: Code, message: str, hint: str | None = None) -> None:
        line = getattr(node, "lineno", 0)
        col = getattr(node, "col_offset", -1) + 1
        loc = SourceLocation(self.filename, line, col)
        src = self.lines[line - 1] if 0 < line <= len(self.lines) else None
        self.items.append(SpecError(code, message, loc, hint, src))


def parse(source: str, filename: str) -> ast.Module:
    dotted = _LONG_IMPORT.search(source)
    if dotted is not None:  # refused below anyway, but CPython parses a long dotted name in quadratic time
        line = source.count("\n", 0, dotted.start()) + 1
        what, fix = _REFUSED[ast.Import]
        raise SpecError(
            Code.SPEC_NOT_STARLARK,
            f"{what} is not allowed in Starlark",
            SourceLocation(filename, line, 1),
            fix,
            source.splitlines()[line - 1][:200],
        )
    parsed, spots = _keyword_attributes(source)
    try:
        tree = ast.parse(parsed, filename=filename, type_comments=False)
    except SyntaxError as exc:
        line = exc.lineno or 0
        lines = source.splitlines()
        src = lines[line - 1] if 0 < line <= len(lines) else None
        raise SpecError(
            Code.SPEC_SYNTAX,
            f"syntax error: {exc.msg}",
            SourceLocation(filename, line, exc.offset or 0),
            source_line=src,
        ) from None
    except (MemoryError, RecursionError):  # the parser's own limits: "too complex", "during ast construction"
        lines = source.splitlines()
        busiest = max(range(len(lines)), key=lambda i: len(_TOKEN.findall(lines[i])), default=0)
        raise _too_deep(filename, lines, busiest + 1, 0, "thousands of") from None
    if spots:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and (node.end_lineno, node.end_col_offset) in spots:
                node.attr = "del"
    return tree


# `cache.main.del(key=...)` is the reference's Redis step: Starlark allows `del` after a dot, Python's
# parser does not. Such a `del` is replaced by a name of the same length before parsing (every column
# stays where it was) and put back in the tree, only at the places replaced.
_DEL_ATTRIBUTE = re.compile(r"\.\s*del\b")
_DEL_STAND_IN = "dl_"


def _keyword_attributes(source: str) -> tuple[str, set[tuple[int, int]]]:
    """The source with `.del` spelled `.dl_`, and the (line, end byte column) of each one."""
    if _DEL_ATTRIBUTE.search(source) is None:
        return source, set()
    if "\r" in source:  # as the parser reads it (a lone CR ends a line), so that both count lines alike
        source = source.replace("\r\n", "\n").replace("\r", "\n")
    found: list[tuple[int, int]] = []
    try:
        previous: tokenize.TokenInfo | None = None
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.NAME and tok.string == "del" and previous is not None and previous.string == ".":
                found.append(tok.start)
            if tok.type not in (tokenize.NL, tokenize.COMMENT):
                previous = tok
    except (tokenize.TokenError, SyntaxError):
        return source, set()  # the parser reports what is wrong
    if not found:
        return source, set()
    lines = source.split("\n")  # as the tokenizer counts lines
    spots: set[tuple[int, int]] = set()
    for row, col in found:
        line = lines[row - 1]
        lines[row - 1] = line[:col] + _DEL_STAND_IN + line[col + 3 :]
        spots.add((row, len(line[: col + 3].encode())))
    return "\n".join(lines), spots


_TOKEN = re.compile(r"\w+|[^\w\s]")
_LONG_IMPORT = re.compile(r"^[ \t]*(?:import|from)[ \t]+(?:\w+[ \t]*\.[ \t]*){200}", re.MULTILINE)


def _too_deep(filename: str, lines: list[str], line: int, col: int, depth: str) -> SpecError:
    return SpecError(
        Code.SPEC_SYNTAX,
        f"an expression here is nested {depth} levels deep: more than a spec may nest",
        SourceLocation(filename, line, col),
        hint="split it: give the inner parts names (x = ...) and build the whole from them",
        source_line=lines[line - 1] if 0 < line <= len(lines) else None,
    )


def _deepest(tree: ast.AST) -> tuple[ast.AST, int]:
    """The most deeply nested node that has a position, and its depth (without recursion)."""
    best, best_depth = tree, 0
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > best_depth and hasattr(node, "lineno"):
            best, best_depth = node, depth
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return best, best_depth


def check(source: str, filename: str, universe: Iterable[str]) -> CheckedModule:
    """Parse and check a spec module. Raises the first SpecError (all are listed in its hint)."""
    tree = parse(source, filename)
    lines = source.splitlines()
    errors = _Errors(filename, lines)
    module = CheckedModule(tree, filename, lines)
    try:
        _check_top_level(tree, module, errors)
        _Gate(errors).visit(tree)
        _Resolver(errors, set(universe), module.top_level).run(tree)
    except RecursionError:  # the visitors recurse: a tree this deep is refused where it is deepest
        node, depth = _deepest(tree)
        col = getattr(node, "col_offset", -1) + 1
        raise _too_deep(filename, lines, getattr(node, "lineno", 0), col, str(depth)) from None
    if errors.items:
        errors.items.sort(key=lambda e: e.location.line if e.location else 0)
        first = errors.items[0]
        if len(errors.items) > 1:
            more = "; ".join(f"{e.location}: {e.message}" for e in errors.items[1:6])
            first.hint = f"{first.hint}\n  also: {more}"
        raise first
    return module


def _check_top_level(tree: ast.Module, module: CheckedModule, errors: _Errors) -> None:
    for stmt in tree.body:
        kind = _TOP_LEVEL_CONTROL.get(type(stmt))
        if kind:
            errors.add(
                stmt,
                Code.SPEC_NOT_STARLARK,
                f"{kind} is not allowed in Starlark",
                "move the statement into a function (def) and call it, or use a comprehension",
            )
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and _is_load(stmt.value):
            load = _parse_load(stmt.value, errors)
            if load:
                module.loads.append(load)
                for name in load.symbols:
                    _bind_top(name, stmt, module, errors)
            continue
        if isinstance(stmt, ast.FunctionDef):
            _bind_top(stmt.name, stmt, module, errors)
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                for name_node in _target_names(target):
                    _bind_top(name_node.id, name_node, module, errors)
        elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            errors.add(
                stmt,
                Code.SPEC_NOT_STARLARK,
                f"top-level name {stmt.target.id!r} cannot be rebound with {_op_symbol(stmt.op)}=",
                "top-level names are bound once; compute the final value in one expression",
            )
    # load() anywhere but a top-level statement
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_load(node) and not _is_top_level_load(tree, node):
            errors.add(
                node,
                Code.SPEC_NOT_STARLARK,
                "load() must be a statement at the top level of the file",
                "move the load() to the top of the file",
            )


def _bind_top(name: str, node: ast.AST, module: CheckedModule, errors: _Errors) -> None:
    line = getattr(node, "lineno", 0)
    if name in module.top_level:
        errors.add(
            node,
            Code.SPEC_NOT_STARLARK,
            f"top-level name {name!r} is already bound at line {module.top_level[name]}",
            "top-level names are bound once in Starlark; pick another name",
        )
        return
    module.top_level[name] = line


def _target_names(target: ast.AST) -> list[ast.Name]:
    if isinstance(target, ast.Name):
        return [target]
    if isinstance(target, (ast.Tuple, ast.List)):
        out: list[ast.Name] = []
        for elt in target.elts:
            out.extend(_target_names(elt))
        return out
    return []  # subscripts and attributes mutate a value; they bind nothing


def _is_load(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "load"


def _is_top_level_load(tree: ast.Module, node: ast.Call) -> bool:
    return any(isinstance(s, ast.Expr) and s.value is node for s in tree.body)


def _parse_load(call: ast.Call, errors: _Errors) -> LoadStatement | None:
    def const_str(n: ast.AST) -> str | None:
        return n.value if isinstance(n, ast.Constant) and isinstance(n.value, str) else None

    if not call.args or const_str(call.args[0]) is None:
        errors.add(
            call, Code.SPEC_NOT_STARLARK, "load() needs a module path string first", 'write load("file.star", "symbol")'
        )
        return None
    symbols: dict[str, str] = {}
    for arg in call.args[1:]:
        sym = const_str(arg)
        if sym is None:
            errors.add(
                arg,
                Code.SPEC_NOT_STARLARK,
                "load() symbols must be string literals",
                'write load("file.star", "symbol", alias="symbol")',
            )
            return None
        symbols[sym] = sym
    for kw in call.keywords:
        sym = const_str(kw.value)
        if kw.arg is None or sym is None:
            errors.add(
                kw,
                Code.SPEC_NOT_STARLARK,
                'load() aliases must be name="symbol"',
                'write load("file.star", alias="symbol")',
            )
            return None
        symbols[kw.arg] = sym
    if not symbols:
        errors.add(
            call,
            Code.SPEC_NOT_STARLARK,
            "load() must name at least one symbol to import",
            'write load("file.star", "symbol")',
        )
        return None
    module = const_str(call.args[0]) or ""
    loc = SourceLocation(errors.filename, call.lineno, call.col_offset + 1)
    return LoadStatement(module, symbols, loc)


def _op_symbol(op: ast.operator) -> str:
    return {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%"}.get(type(op), "op")


class _Gate(ast.NodeVisitor):
    """Refuses constructs that are not Starlark."""

    def __init__(self, errors: _Errors) -> None:
        self.errors = errors

    def generic_visit(self, node: ast.AST) -> None:
        refused = _REFUSED.get(type(node))
        if refused:
            what, fix = refused
            self.errors.add(node, Code.SPEC_NOT_STARLARK, f"{what} is not allowed in Starlark", fix)
            return
        super().generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.decorator_list:
            self.errors.add(
                node.decorator_list[0],
                Code.SPEC_NOT_STARLARK,
                "decorators are not allowed in Starlark",
                "call the wrapper function explicitly",
            )
        self._check_arguments(node.args, node)
        if node.returns is not None:
            self.errors.add(
                node.returns,
                Code.SPEC_NOT_STARLARK,
                "type annotations are not allowed in Starlark",
                "drop the annotation",
            )
        self.generic_visit(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._check_arguments(node.args, node)
        self.generic_visit(node)

    def _check_arguments(self, args: ast.arguments, node: ast.AST) -> None:
        if args.posonlyargs:
            self.errors.add(
                node, Code.SPEC_NOT_STARLARK, "positional-only parameters (/) are not Starlark", "remove the /"
            )
        for a in [*args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if a is not None and a.annotation is not None:
                self.errors.add(
                    a.annotation,
                    Code.SPEC_NOT_STARLARK,
                    "type annotations are not allowed in Starlark",
                    "drop the annotation",
                )

    def visit_Compare(self, node: ast.Compare) -> None:
        for op in node.ops:
            if isinstance(op, (ast.Is, ast.IsNot)):
                word = "is not" if isinstance(op, ast.IsNot) else "is"
                self.errors.add(
                    node,
                    Code.SPEC_NOT_STARLARK,
                    f"the `{word}` operator is not Starlark",
                    "compare with == or != (e.g. x == None)",
                )
                return
        if len(node.ops) > 1:
            self.errors.add(
                node, Code.SPEC_NOT_STARLARK, "chained comparisons are not Starlark", "split it: a < b and b < c"
            )
            return
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Pow):
            self.errors.add(
                node, Code.SPEC_NOT_STARLARK, "the ** operator is not Starlark", "multiply explicitly (x * x)"
            )
            return
        if isinstance(node.op, ast.MatMult):
            self.errors.add(node, Code.SPEC_NOT_STARLARK, "the @ operator is not Starlark", "remove it")
            return
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_"):
            self.errors.add(
                node,
                Code.SPEC_NOT_STARLARK,
                f"attribute names beginning with '_' are not accessible ({node.attr!r})",
                "use the documented attributes of the value",
            )
            return
        self.generic_visit(node)

    def visit_Starred(self, node: ast.Starred) -> None:
        if isinstance(node.ctx, ast.Store):
            self.errors.add(
                node,
                Code.SPEC_NOT_STARLARK,
                "starred assignment is not Starlark",
                "index the sequence instead: a, b = xs[0], xs[1:]",
            )
            return
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if node.value is Ellipsis:
            self.errors.add(
                node, Code.SPEC_NOT_STARLARK, "`...` is not a Starlark value", "use None, or write the body out"
            )

    def visit_Expr(self, node: ast.Expr) -> None:
        # `...` as a whole statement is accepted as a placeholder body (the seed page elides bodies so).
        if isinstance(node.value, ast.Constant) and node.value.value is Ellipsis:
            return
        self.generic_visit(node)


class _Resolver:
    """Static name resolution: every name read must be local, top-level, loaded, or a builtin."""

    def __init__(self, errors: _Errors, universe: set[str], top_level: dict[str, int]) -> None:
        self.errors = errors
        self.universe = universe
        self.top = top_level

    def run(self, tree: ast.Module) -> None:
        for stmt in tree.body:
            if isinstance(stmt, ast.Expr) and _is_load(stmt.value):
                continue
            self._visit(stmt, [])

    def _visit(self, node: ast.AST, scopes: list[set[str]]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            for default in [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]:
                self._visit(default, scopes)
            params_and_locals = _function_locals(node)
            body = node.body if isinstance(node, ast.FunctionDef) else [node.body]
            for stmt in body:
                self._visit(stmt, [*scopes, params_and_locals])
            return
        if isinstance(node, (ast.ListComp, ast.DictComp)):
            local: set[str] = set()
            for gen in node.generators:
                self._visit(gen.iter, [*scopes, local])
                local.update(n.id for n in _target_names(gen.target))
                for cond in gen.ifs:
                    self._visit(cond, [*scopes, local])
            elts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            for elt in elts:
                self._visit(elt, [*scopes, local])
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            self._check_name(node, scopes)
            return
        for child in ast.iter_child_nodes(node):
            self._visit(child, scopes)

    def _check_name(self, node: ast.Name, scopes: list[set[str]]) -> None:
        name = node.id
        if name in self.top or name in self.universe or any(name in s for s in scopes):
            return
        candidates = set(self.top) | self.universe
        for s in scopes:
            candidates |= s
        best = suggest(name, candidates)
        hint = f'did you mean "{best}"?' if best else None
        self.errors.add(node, Code.SPEC_UNDEFINED, f"undefined name {name!r}", hint)


def _function_locals(node: ast.FunctionDef | ast.Lambda) -> set[str]:
    args = node.args
    names = {a.arg for a in [*args.args, *args.kwonlyargs]}
    if args.vararg:
        names.add(args.vararg.arg)
    if args.kwarg:
        names.add(args.kwarg.arg)
    if isinstance(node, ast.Lambda):
        return names
    stack: list[ast.AST] = list(node.body)
    while stack:
        child = stack.pop()
        if isinstance(child, ast.FunctionDef):
            names.add(child.name)
            continue  # its body is its own scope
        if isinstance(child, (ast.Lambda, ast.ListComp, ast.DictComp)):
            continue
        if isinstance(child, (ast.Assign, ast.AugAssign, ast.For)):
            targets = child.targets if isinstance(child, ast.Assign) else [child.target]
            for t in targets:
                names.update(n.id for n in _target_names(t))
        stack.extend(ast.iter_child_nodes(child))
    return names
