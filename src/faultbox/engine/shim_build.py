"""Build the C shim (shim.c) into an executable next to this module, or into a cache directory.

The shim is built when the package is installed (setup.py calls build()), and again on first use if
the installed copy is missing or was built from another version of shim.c. The file name carries a
hash of the source, so a stale binary is never used. This module imports nothing from faultbox:
setup.py loads it by path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from faultbox.errors import Code, InfraError

SOURCE = Path(__file__).resolve().parent / "shim.c"
PACKAGE_BIN = Path(__file__).resolve().parent / "_bin"


class ShimBuildError(InfraError):
    code = Code.SHIM_BUILD_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(self.code, message)


def shim_name() -> str:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    return f"faultbox-shim-{digest}"


def build(out_dir: Path) -> Path:
    """Compile shim.c into out_dir (atomically); returns the executable's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / shim_name()
    if target.exists():
        return target
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise ShimBuildError("no C compiler found (install gcc: apt-get install -y gcc, or run ./scripts/setup)")
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".shim-")
    os.close(fd)
    try:
        proc = subprocess.run(
            [cc, "-O2", "-Wall", "-Wextra", "-o", tmp, str(SOURCE)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ShimBuildError(f"compiling {SOURCE} failed:\n{proc.stderr}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "faultbox"


def find_or_build() -> Path:
    """The shim executable, building it on first use."""
    name = shim_name()
    for directory in (PACKAGE_BIN, _cache_dir()):
        candidate = directory / name
        if candidate.exists():
            return candidate
    try:
        return build(PACKAGE_BIN)
    except OSError:
        return build(_cache_dir())
