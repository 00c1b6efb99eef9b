"""Builds the seccomp shim (a small C program) and the supervisor's C loop when faultbox is installed."""

import importlib.util
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py


def _shim_builder():
    src = Path(__file__).resolve().parent / "src"
    path = src / "faultbox/engine/shim_build.py"
    spec = importlib.util.spec_from_file_location("_faultbox_shim_build", path)
    module = importlib.util.module_from_spec(spec)
    # It imports faultbox.errors, which an isolated build (pip wheel .) has not installed: the source's.
    sys.path.insert(0, str(src))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(src))
    return module


class BuildWithShim(build_py):
    def run(self):
        super().run()
        builder = _shim_builder()
        if self.editable_mode:
            builder.build(builder.PACKAGE_BIN)
        else:
            builder.build(Path(self.build_lib) / "faultbox/engine/_bin")
            _ship_docs(Path(self.build_lib) / "faultbox/_docs")


def _ship_docs(dest):
    """README.md and docs/ inside the package (faultbox/_docs): `faultbox docs` and `faultbox mcp`
    read them where only the installed package is."""
    root = Path(__file__).resolve().parent
    docs = root / "docs"
    if not docs.is_dir():
        return
    for path in [root / "README.md", *sorted(docs.rglob("*"))]:
        if path.is_file() and path.suffix in (".md", ".star", ".py", ".sql"):
            target = dest / (path.name if path.parent == root else path.relative_to(docs))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


setup(
    cmdclass={"build_py": BuildWithShim},
    ext_modules=[
        Extension(
            "faultbox.engine._notify",
            ["src/faultbox/engine/_notify.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        )
    ],
)
