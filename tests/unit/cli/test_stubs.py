"""`faultbox stubs`: the editor stub names exactly the builtin universe, each function with the
parameters of its registered signature and the docs of its section, and is the same every time."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from faultbox.cli.main import main
from faultbox.cli.stubs import EVENT_ATTRIBUTES, doc_sections, generate, spec_language_text
from faultbox.model.event import Event
from faultbox.spec.args import Signature
from faultbox.spec.builtins import Builtin, make_universe, universe_names
from faultbox.spec.registry import SpecBuilder

ROOT = Path(__file__).resolve().parents[3]
STUB = generate()
TREE = ast.parse(STUB)


def _documented_names() -> set[str]:
    """The names docs/spec-language.md documents (tests/unit/test_public_surface.py's reading)."""
    path = ROOT / "tests" / "unit" / "test_public_surface.py"
    spec = importlib.util.spec_from_file_location("public_surface", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names: set[str] = module.documented_names()
    return names


def _top_level() -> dict[str, ast.AST]:
    out: dict[str, ast.AST] = {}
    for node in TREE.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = node
    return out


def _core() -> set[str]:
    line = next(x for x in STUB.splitlines() if x.startswith("# Starlark core, as in Python: "))
    return set(line.split(": ", 1)[1].split())


def test_the_stub_names_exactly_the_universe() -> None:
    public = {n for n in _top_level() if not n.startswith("_")}
    assert public.isdisjoint(_core())
    assert public | _core() == set(universe_names())
    assert public | _core() == _documented_names()
    import builtins

    assert all(hasattr(builtins, n) for n in _core()), "a core name the editor's Python does not have"


def _check_params(fn: ast.FunctionDef, sig: Signature, *, method: bool = False) -> None:
    args = fn.args
    positional = [a.arg for a in args.args][1 if method else 0 :]
    assert args.posonlyargs == []
    assert positional == [p.name for p in sig.params if not p.kw_only], fn.name
    assert [a.arg for a in args.kwonlyargs] == [p.name for p in sig.params if p.kw_only], fn.name
    assert (args.vararg.arg if args.vararg else None) == sig.varargs, fn.name
    assert (args.kwarg.arg if args.kwarg else None) == sig.varkw, fn.name
    optional_positional = [p for p in sig.params if not p.kw_only and not p.required]
    assert len(args.defaults) == len(optional_positional), fn.name
    kw = [p for p in sig.params if p.kw_only]
    assert [d is not None for d in args.kw_defaults] == [not p.required for p in kw], fn.name
    for default, p in zip(args.defaults, optional_positional, strict=True):
        _same_default(default, p.default_text)
    for default, p in zip(args.kw_defaults, kw, strict=True):
        if default is not None:
            _same_default(default, p.default_text)


def _same_default(node: ast.expr, text: str | None) -> None:
    assert text is not None
    value = ast.literal_eval(text)
    if isinstance(value, str) and value.startswith("\x00"):  # a sentinel: shown as ...
        assert isinstance(node, ast.Constant) and node.value is Ellipsis
    else:
        assert ast.literal_eval(node) == value


def test_every_function_has_its_registered_signature_and_docs() -> None:
    universe = make_universe(SpecBuilder("<test>"))
    defs = _top_level()
    sections = doc_sections(spec_language_text())
    builtins_seen = 0
    for name, value in universe.items():
        if not isinstance(value, Builtin):
            continue
        builtins_seen += 1
        fn = defs[name]
        assert isinstance(fn, ast.FunctionDef)
        _check_params(fn, value.signature)
        doc = ast.get_docstring(fn)
        assert doc, f"{name}() has no docstring"
        first_paragraph = sections[name].body.split("\n\n")[0]
        assert first_paragraph in doc, name
    assert builtins_seen > 60
    observe = defs["_Observe"]
    assert isinstance(observe, ast.ClassDef)
    methods = {m.name: m for m in observe.body if isinstance(m, ast.FunctionDef)}
    for attr, value in universe["observe"].fields.items():
        _check_params(methods[attr], value.signature, method=True)
        assert ast.get_docstring(methods[attr])


def test_the_value_types_are_declared_with_their_attributes() -> None:
    defs = _top_level()

    def members(cls: str) -> set[str]:
        node = defs[cls]
        assert isinstance(node, ast.ClassDef)
        out = {m.name for m in node.body if isinstance(m, ast.FunctionDef)}
        return out | {m.target.id for m in node.body if isinstance(m, ast.AnnAssign) and isinstance(m.target, ast.Name)}

    event = Event("stdout", "api", {"x": "1"})
    assert {a for a, _, _ in EVENT_ATTRIBUTES} <= members("_Event")
    assert all(hasattr(event, a) for a, _, _ in EVENT_ATTRIBUTES)
    assert {"status", "body", "data", "ok", "error", "duration_ms", "headers"} <= members("_Response")
    assert {"addr", "host", "port", "name", "protocol", "proxy_addr", "query", "exec", "publish", "send"} <= members(
        "_InterfaceRef"
    )
    assert {"name", "addr", "get", "post", "send", "__getattr__"} <= members("_Service")
    # every class an annotation names is declared
    used = {n.id for n in ast.walk(TREE) if isinstance(n, ast.Name) and n.id.startswith("_")}
    assert used <= set(defs)


def test_the_stub_is_the_same_every_time() -> None:
    assert generate() == STUB
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = subprocess.run(
        [sys.executable, "-m", "faultbox", "stubs"], capture_output=True, text=True, env=env, check=True
    )
    assert proc.stdout == STUB


def test_the_docs_are_the_installations(tmp_path: Path) -> None:
    assert spec_language_text() == (ROOT / "docs" / "spec-language.md").read_text()
    text = "### `sleep(duration)`\nWaits a little.\n\n### `halt()`\nStops.\n"
    stub = generate(text)
    fn = next(n for n in ast.parse(stub).body if isinstance(n, ast.FunctionDef) and n.name == "sleep")
    assert ast.get_docstring(fn) == "sleep(duration)\n\nWaits a little."


def test_stubs_command_writes_the_file(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "typings" / "__builtins__.pyi"
    assert main(["stubs", "--output", str(out)]) == 0
    assert out.read_text() == STUB
    assert main(["stubs"]) == 0
    assert capsys.readouterr().out == STUB
