"""Builds the seccomp shim (a small C program) and the supervisor's C loop when faultbox is installed."""

import importlib.util
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
