"""Loading a spec and the files it load()s (DECISIONS §3).

A relative path resolves against the directory of the file that calls load(); `@faultbox/...` is the
stdlib shipped in the package; each module runs once per run; a missing file, a missing symbol or a
load cycle is an error naming both ends.
"""

from __future__ import annotations

import os
from pathlib import Path

from faultbox.errors import Code, SourceLocation, SpecError
from faultbox.spec import dialect
from faultbox.spec.args import ArgError
from faultbox.spec.builtins import make_universe
from faultbox.spec.compile import Module, as_spec_error, compile_module, execute
from faultbox.spec.registry import Spec, SpecBuilder

STDLIB_DIR = Path(__file__).resolve().parent.parent / "stdlib"
STDLIB_PREFIX = "@faultbox/"


class Loader:
    def __init__(self, builder: SpecBuilder) -> None:
        self.builder = builder
        self.modules: dict[str, Module] = {}
        self._loading: list[str] = []
        self._universe = make_universe(builder)
        self._stdlib_universe = make_universe(builder, stdlib=True)

    def load_root(self, path: str) -> Module:
        full = os.path.abspath(path)
        if not os.path.isfile(full):
            raise SpecError(Code.SPEC_NOT_FOUND, f"spec file {path} does not exist", hint="check the path")
        return self._run(full, full, stdlib=False)

    def load(self, name: str, caller: Module) -> Module:
        """Called by the load() builtin while `caller` runs its top level."""
        if name.startswith(STDLIB_PREFIX):
            rel = name[len(STDLIB_PREFIX) :]
            full = str((STDLIB_DIR / rel).resolve())
            stdlib = True
            if not full.startswith(str(STDLIB_DIR)) or not os.path.isfile(full):
                available = ", ".join(sorted(STDLIB_PREFIX + p.name for p in STDLIB_DIR.glob("*.star")))
                raise ArgError(f'load(): "{name}" is not in the faultbox stdlib', f"available: {available}")
        else:
            full = os.path.normpath(os.path.join(caller.directory, name))
            stdlib = caller.path.startswith(str(STDLIB_DIR))
            if not os.path.isfile(full):
                raise ArgError(
                    f'load(): "{name}" not found (looked for {full})',
                    "relative load() paths resolve against the directory of the file that calls load()",
                )
        if full in self._loading:
            chain = " -> ".join([*self._loading[self._loading.index(full) :], full])
            raise ArgError(f"load(): cycle: {chain}", "break the cycle by moving shared code to a third file")
        cached = self.modules.get(full)
        if cached is not None:
            return cached
        return self._run(full, name, stdlib=stdlib)

    def _run(self, full: str, name: str, *, stdlib: bool) -> Module:
        try:
            raw = Path(full).read_bytes()
        except OSError as exc:
            raise SpecError(Code.SPEC_NOT_FOUND, f"cannot read {full}: {exc.strerror or exc}") from None
        try:
            source = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            raise SpecError(
                Code.SPEC_SYNTAX,
                f"the file is not UTF-8 text: byte 0x{raw[exc.start]:02x} cannot be decoded",
                SourceLocation(full, line, col),
                hint="save the spec as UTF-8 (a spec is text; binary data belongs in a file read with load_file())",
            ) from None
        universe = self._stdlib_universe if stdlib else self._universe
        checked = dialect.check(source, full, universe)
        module = Module(full, name, checked)
        code = compile_module(checked)
        module.globals["__fb_loader__"] = self
        self._loading.append(full)
        try:
            execute(module, code, universe)
        except SpecError:
            raise
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise as_spec_error(exc, SourceLocation(full, 1)) from None
        finally:
            self._loading.pop()
        self.modules[full] = module
        return module


def spec_files(spec: Spec) -> list[str]:
    """Every file a spec's run depends on, as absolute paths: the spec, the files it load()ed (the
    stdlib aside: it ships with faultbox) and the data files it read, each once."""
    stdlib = str(STDLIB_DIR)
    found = [spec.path, *(p for p in spec.modules if not p.startswith(stdlib)), *spec.data_files]
    return list(dict.fromkeys(os.path.abspath(p) for p in found))
