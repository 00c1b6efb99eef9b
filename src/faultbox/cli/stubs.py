"""`faultbox stubs [--output FILE]`: the spec language's builtins as a Python-syntax stub, for
editors. Pyright, basedpyright and Pylance read it as `__builtins__.pyi` (with `*.star` files opened
as Python), and tilt's starlark-lsp as a `--builtin-paths` file (docs/editors.md).

Everything comes from the installed package: the names and signatures from the builtin universe
(the same signature strings the argument checker uses), the return types from the builtins'
annotations, and the docstrings from the spec-language document shipped with it. The output is
deterministic: the same faultbox gives the same bytes."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import keyword
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from faultbox import __version__
from faultbox.cli.mcp_tools import find_docs
from faultbox.model.event import Event
from faultbox.model.response import Response
from faultbox.model.result import ExitCode
from faultbox.spec.args import Param, Signature, registered_type_names, signature_types
from faultbox.spec.builtins import Builtin, make_universe
from faultbox.spec.registry import SpecBuilder
from faultbox.spec.values import STEP_METHODS, InterfaceRef, Struct

# Starlark's own names that behave as Python's builtins of the same name: an editor reading the
# stub as Python has them already, and redefining them (`str`, `list`...) would shadow the types
# the stub's annotations use. They are listed in the stub's header, not defined.
CORE_TYPES = {"str": "str", "int": "int", "num": "float", "bool": "bool", "any": "Any", "duration": "str"}
_GENERIC_TYPES = {
    "list": "list[Any]",
    "strlist": "list[str]",
    "dict": "dict[str, Any]",
    "strdict": "dict[str, str]",
    "callable": "Callable[..., Any]",
    "index": "int | str",  # lrange's start/stop: an int or its text, as the reference passes them
}
# Python names in builtins' return annotations that the stub spells as they are.
_PLAIN_RETURNS = {"str", "int", "float", "bool", "None", "Any", "list", "dict", "tuple"}
# Shorthand steps a service with one interface answers itself (values.py's _SHORTHAND).
_SHORTHAND = ("get", "post", "put", "delete", "patch", "send")


@dataclasses.dataclass(frozen=True)
class Section:
    heading: str  # the heading's text, without "### "
    body: str


def doc_sections(text: str) -> dict[str, Section]:
    """Each name documented by a `### ` heading of spec-language.md (`name(...)` or `name`, dotted
    names included) -> the first section that documents it."""
    out: dict[str, Section] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.startswith("### "):
            continue
        heading = line[4:].strip()
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("#") and lines[i].strip() != "---":
            body.append(lines[i])
            i += 1
        section = Section(heading, "\n".join(body).strip())
        for name in re.findall(r"`([\w.]+)(?:\([^`]*\))?`", heading):
            out.setdefault(name, section)
    return out


def _steps_table(text: str) -> dict[str, str]:
    """protocol -> its row of the Steps table, and "" -> the paragraph under the table."""
    match = re.search(r"^### Steps\n(.*?)(?=^---|^#)", text, re.MULTILINE | re.DOTALL)
    if match is None:
        return {}
    out: dict[str, str] = {}
    after: list[str] = []
    for line in match.group(1).strip().splitlines():
        row = re.match(r"\|\s*`(\w+)`\s*\|(.*)\|\s*$", line)
        if row:
            out[row.group(1)] = row.group(2).strip()
        elif not line.startswith("|"):
            after.append(line)
    out[""] = "\n".join(after).strip()
    return out


def spec_language_text() -> str:
    """docs/spec-language.md of this installation (shipped in the package, or the checkout's)."""
    for doc in find_docs():
        if doc.name == "spec-language.md":
            return doc.path.read_text(encoding="utf-8")
    raise FileNotFoundError("spec-language.md is not in this installation of faultbox")


# -- types ----------------------------------------------------------------------------------


def _class_name(type_name: str) -> str:
    return "_" + "".join(part.capitalize() for part in type_name.split("_"))


# A signature type checked as one of a registered value type's classes.
_SAME_AS = {"answer": "mock_response"}
# Values spec code reads attributes of, declared whether or not a builtin names them.
_ALWAYS_DECLARED = ("event", "interface_ref", "response", "service", "struct")
_CLASS_DOCS = {
    "service": "What service() and mock_service() return: svc.name, svc.addr, svc.<interface>, and the "
    "steps of its only interface.",
    "interface_ref": "An interface of a service (svc.main): its address, its proxy's, and its protocol's steps.",
    "struct": "An immutable record: struct(a=1).a.",
    "event": "An entry of the trace, as monitors, where= lambdas and events() see it.",
}


def _param_type(name: str, optional: bool) -> str:
    if name in CORE_TYPES:
        text = CORE_TYPES[name]
    elif name in _GENERIC_TYPES:
        text = _GENERIC_TYPES[name]
    else:
        text = _class_name(_SAME_AS.get(name, name))
    return f"{text} | None" if optional and text != "Any" else text


def _return_type(impl: Callable[..., Any]) -> str:
    """A builtin's result type from its annotation, in the stub's names (Any when it names a class
    spec code does not see)."""
    annotation = getattr(impl, "__annotations__", {}).get("return", "Any")
    if not isinstance(annotation, str):
        annotation = getattr(annotation, "__name__", "Any")
    names = registered_type_names()
    scope = getattr(inspect.getmodule(impl), "__dict__", {})
    unknown = False

    def spell(match: re.Match[str]) -> str:
        nonlocal unknown
        word = match.group(0)
        if word in _PLAIN_RETURNS:
            return word
        cls = scope.get(word)
        if cls is Event:
            return "_Event"
        if isinstance(cls, type):
            spelled = {n for c, n in names.items() if issubclass(c, cls)}  # a base class: its subclasses' name
            if len(spelled) == 1:
                return _class_name(spelled.pop())
        unknown = True
        return word

    text = re.sub(r"[A-Za-z_][A-Za-z0-9_.]*", spell, annotation)
    return "Any" if unknown else text


# -- rendering ------------------------------------------------------------------------------


def _docstring(text: str, indent: str) -> list[str]:
    text = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if not text:
        return []
    lines = text.splitlines()
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    body = [f"{indent}{line}".rstrip() for line in lines[1:]]
    return [f'{indent}"""{lines[0]}', *body, f'{indent}"""']


def _default(param: Param) -> str:
    text = param.default_text if param.default_text is not None else repr(param.default)
    value = ast.literal_eval(text)
    return "..." if isinstance(value, str) and value.startswith("\x00") else repr(value)  # a sentinel


def render_params(sig: Signature, *, self_param: bool = False) -> str:
    """A registered signature as Python parameters: the same names, kinds and defaults."""
    parts = ["self"] if self_param else []
    star_done = False
    for p in sig.params:
        if p.kw_only and not star_done:
            parts.append(f"*{sig.varargs}: {_param_type(sig.varargs_type, False)}" if sig.varargs else "*")
            star_done = True
        piece = f"{_safe(p.name)}: {_param_type(p.type, p.optional_none)}"
        if not p.required:
            piece += f" = {_default(p)}"
        parts.append(piece)
    if sig.varargs and not star_done:
        parts.append(f"*{sig.varargs}: {_param_type(sig.varargs_type, False)}")
    if sig.varkw:
        parts.append(f"**{sig.varkw}: {_param_type(sig.varkw_type, False)}")
    return ", ".join(parts)


def _safe(name: str) -> str:
    if keyword.iskeyword(name):
        raise ValueError(f"parameter {name!r} is a Python keyword: a stub cannot spell it")
    return name


def _function(name: str, params: str, result: str, doc: str, indent: str = "") -> list[str]:
    if keyword.iskeyword(name):  # redis' `del` step: a spec may call it, Python cannot declare it
        return [f"{indent}# {name}({params}) -> {result}: a step named by a Python keyword (no stub)"]
    head = f"{indent}def {name}({params}) -> {result}:"
    docs = _docstring(doc, indent + "    ")
    if not docs:
        return [head[:-1] + ": ..."]
    return [head, *docs]


def _builtin_doc(name: str, sections: dict[str, Section], dotted: str | None = None) -> str:
    section = sections.get(dotted or name)
    if section is None:
        return ""
    return f"{section.heading.replace('`', '')}\n\n{section.body}".strip()


def _step_forms() -> dict[str, list[tuple[str, str]]]:
    """step method -> [(protocol, signature text)], protocols in the table's order (http2 as http)."""
    forms: dict[str, list[tuple[str, str]]] = {}
    for protocol, methods in STEP_METHODS.items():
        if protocol == "http2":
            continue
        for method, text in methods.items():
            forms.setdefault(method, []).append((protocol, text))
    return forms


def _step_method(method: str, forms: list[tuple[str, str]], steps: dict[str, str]) -> list[str]:
    result = "str" if method == "send" else "_Response"
    protocols = [p for p, _ in forms]
    doc = "\n".join(f"{p}: {steps.get(p, '')}".replace("`", "") for p in protocols)
    if len({text for _, text in forms}) == 1:
        params = render_params(Signature.parse(method, forms[0][1]), self_param=True)
    else:  # one name, several protocols' signatures (http get(path) and redis get(key))
        params = "self, *args: Any, **kwargs: Any"
        result = "_Response"
    return _function(method, params, result, doc, "    ")


def _properties(cls: type) -> Iterator[tuple[str, str]]:
    for attr, value in sorted(vars(cls).items()):
        if isinstance(value, property) and not attr.startswith("_"):
            ret = getattr(value.fget, "__annotations__", {}).get("return", "Any")
            yield attr, ret if ret in _PLAIN_RETURNS else "Any"


# Attributes of values spec code reads, beyond properties (kept true by tests/unit/cli/test_stubs.py).
EVENT_ATTRIBUTES = (
    ("type", "str", "The event's type (syscall, stdout, wal, step_recv, ...)."),
    ("service", "str", "The service the event belongs to."),
    ("seq", "int", "Its sequence number, from 1 in each test."),
    ("fields", "dict[str, str]", "Every field, as strings."),
    ("data", "Any", "Native values when the source had them (a JSON log line), else the string fields."),
)


def _value_class(name: str, doc: str, steps: dict[str, str]) -> list[str]:
    lines = [f"class {_class_name(name)}:", *_docstring(doc, "    ")]
    if name == "service":
        lines += ["    name: str", "    addr: str"]
        for method in _SHORTHAND:
            forms = [(p, STEP_METHODS[p][method]) for p in ("http", "tcp") if method in STEP_METHODS[p]]
            lines += _step_method(method, forms, steps)
        lines.append("    def __getattr__(self, name: str) -> _InterfaceRef: ...")
    elif name == "interface_ref":
        lines += [f"    {attr}: {ret}" for attr, ret in _properties(InterfaceRef)]
        for method, forms in sorted(_step_forms().items()):
            lines += _step_method(method, forms, steps)
    elif name == "response":
        for f in dataclasses.fields(Response):
            ret = {"FrozenDict": "dict[str, str]"}.get(str(f.type), str(f.type))
            lines.append(f"    {f.name}: {ret}")
    elif name == "struct":
        lines.append("    def __getattr__(self, name: str) -> Any: ...")
    elif name == "event":
        lines += [f"    {attr}: {ret}" for attr, ret, _ in EVENT_ATTRIBUTES]
        lines.append("    def get(self, key: str, default: Any = None) -> Any: ...")
        lines.append("    def __getitem__(self, key: str) -> Any: ...")
        lines.append("    def __getattr__(self, name: str) -> str | None: ...")
    else:
        lines.append("    ...")
    return lines


def _class_doc(name: str, makers: list[str], steps: dict[str, str]) -> str:
    if name in _CLASS_DOCS:
        return _CLASS_DOCS[name]
    if name == "response":
        return "What a step returns.\n\n" + steps.get("", "")
    description = signature_types().get(name, "")
    made = f"What {', '.join(f'{m}()' for m in makers)} return{'s' if len(makers) == 1 else ''}." if makers else ""
    if description:
        return f"{description[:1].upper()}{description[1:]}." + (f" {made}" if made else "")
    return made or f"A {name} value."


def generate(docs_text: str | None = None) -> str:
    """The stub's text for this installation's universe."""
    text = spec_language_text() if docs_text is None else docs_text
    sections = doc_sections(text)
    steps = _steps_table(text)
    universe = make_universe(SpecBuilder("<stubs>"))
    core = sorted(n for n, v in universe.items() if not isinstance(v, (Builtin, Struct)))

    functions: list[str] = []
    makers: dict[str, list[str]] = {}
    for name in sorted(universe):
        value = universe[name]
        if isinstance(value, Builtin):
            result = _return_type(value.impl)
            makers.setdefault(result, []).append(name)
            functions += ["", *_function(name, render_params(value.signature), result, _builtin_doc(name, sections))]

    namespaces: list[str] = []
    for space, about in (
        ("match", "match.event(...), match.any(...), match.all(...), match.never(): matchers of events."),
        ("observe", "observe.stdout(...) and observe.stderr(...): output lines as events."),
    ):
        namespaces += [f"class _{space.title()}:", *_docstring(about, "    ")]
        struct = universe[space]
        for attr in sorted(struct.fields):
            fn = struct.fields[attr]
            doc = _builtin_doc(attr, sections, f"{space}.{attr}")
            rendered = render_params(fn.signature, self_param=True)
            namespaces += _function(attr, rendered, _return_type(fn.impl), doc, "    ")
        namespaces.append("")
    namespaces += ["class _Json:", *_docstring(_builtin_doc("json", sections), "    ")]
    json_module = universe["json"]
    for attr in sorted(json_module.fields):
        sig = inspect.signature(json_module.fields[attr])
        params = ["self"]
        for p in sig.parameters.values():
            params.append(f"{p.name}: {p.annotation}" + ("" if p.default is p.empty else f" = {p.default!r}"))
        namespaces += _function(attr, ", ".join(params), str(sig.return_annotation), "", "    ")

    used = set(re.findall(r"\b_[A-Z]\w*", "\n".join(functions + namespaces)))
    all_types = {*signature_types(), *registered_type_names().values(), *_ALWAYS_DECLARED}
    classes: list[str] = []
    for name in sorted(all_types):
        if name in _ALWAYS_DECLARED or (_class_name(name) in used and name not in _SAME_AS):
            doc = _class_doc(name, makers.get(_class_name(name), []), steps)
            classes += [*_value_class(name, doc, steps), ""]
    out = [
        f"# The builtins of faultbox {__version__}'s spec language, for editors (faultbox stubs).",
        "# Generated from the builtin universe and docs/spec-language.md: regenerate, do not edit.",
        "# Pyright, basedpyright, Pylance: save as __builtins__.pyi at the project's root (open *.star as",
        "# Python); starlark-lsp: pass as --builtin-paths FILE.py. See docs/editors.md.",
        "# Starlark core, as in Python: " + " ".join(core),
        "",
        "from typing import Any, Callable",
        "",
        *classes,
        *namespaces,
        "",
        *functions,
        "",
        "json: _Json",
        "match: _Match",
        "observe: _Observe",
        "",
    ]
    return "\n".join(out)


def add_parser(sub: Any) -> None:
    stubs = sub.add_parser(
        "stubs",
        help="write the spec language's builtins (signatures and docs) as a Python stub for editors "
        "(__builtins__.pyi for pyright/Pylance, or starlark-lsp --builtin-paths)",
    )
    stubs.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")


def command(args: argparse.Namespace) -> int:
    try:
        text = generate()
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    if args.output is None or args.output == "-":
        sys.stdout.write(text)
        return ExitCode.OK
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"stubs: {path}", file=sys.stderr)
    return ExitCode.OK


__all__ = ["add_parser", "command", "doc_sections", "generate", "render_params"]
