"""The builtin names a spec can see are an API: they match the documented list exactly, and the
package imports cleanly module by module, with the layers pointing one way."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from faultbox.spec.builtins import universe_names

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "faultbox"


def documented_names() -> set[str]:
    text = (ROOT / "docs" / "spec-language.md").read_text()
    names = set(re.findall(r"^### `(\w+)[(`]", text, re.MULTILINE))
    names |= set(re.findall(r"`(\w+)\(", "".join(re.findall(r"^### `.*$", text, re.MULTILINE))))
    core = re.search(r"### Starlark core\n\n`([^`]*)`", text)
    assert core is not None
    names |= set(core.group(1).split())
    names.add("observe")
    return names


def test_universe_matches_the_documentation() -> None:
    documented = documented_names()
    universe = set(universe_names())
    assert universe - documented == set(), "undocumented builtins"
    assert documented - universe == set(), "documented but missing builtins"


# Who may import whom (ARCHITECTURE-NOTES §8.2): L0 _util/errors; L1 model; L2 the mechanism
# packages (independent of each other); L3 runner; L4 report; L5 cli.
LAYERS = {
    "_util": 0, "errors": 0,
    "model": 1,
    "spec": 2, "trace": 2, "engine": 2, "protocols": 2, "sources": 2, "deps": 2, "proxy": 2,
    "runner": 3,
    "report": 4,
    "cli": 5, "pytest_plugin": 5,
}  # fmt: skip
L2 = {k for k, v in LAYERS.items() if v == 2}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("faultbox."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("faultbox.")}
    return out


def test_layers_point_one_way() -> None:
    problems = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        top = rel.parts[0].removesuffix(".py")
        if top not in LAYERS:
            continue
        for dep in _imports(path):
            if dep not in LAYERS or dep == top:
                continue
            if LAYERS[dep] > LAYERS[top] or (LAYERS[dep] == 2 and LAYERS[top] == 2):
                problems.append(f"{rel} imports faultbox.{dep}")
    assert problems == []


def test_every_module_imports_alone() -> None:
    modules = sorted(
        ".".join(("faultbox", *p.relative_to(SRC).with_suffix("").parts))
        for p in SRC.rglob("*.py")
        if p.name != "__main__.py"
    )
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code, *modules], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
