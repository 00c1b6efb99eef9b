"""The seed of the last run of a spec, kept beside it in `.faultbox/last-seed` (the number and a
newline), so that `faultbox test SPEC --seed last` runs the same seed again. Every `faultbox test`
records its seed there as it starts (a run that is killed keeps it too), written atomically."""

from __future__ import annotations

import os
import tempfile

from faultbox.errors import Code, UsageError

CACHE_DIR = ".faultbox"
FILE = "last-seed"


class NoLastSeed(UsageError):
    code = Code.NO_LAST_SEED


def path_for(spec_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(spec_path)), CACHE_DIR, FILE)


def read(spec_path: str) -> int:
    """The last run's seed; NoLastSeed (said why) when there is none to read."""
    path = path_for(spec_path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except FileNotFoundError:
        raise NoLastSeed(f"--seed last: no seed recorded for {spec_path} yet ({path} does not exist)") from None
    except OSError as exc:
        raise NoLastSeed(f"--seed last: cannot read {path}: {exc.strerror or exc}") from None
    try:
        return int(text)
    except ValueError:
        raise NoLastSeed(f"--seed last: {path} holds {text[:40]!r}, not a seed") from None


def write(spec_path: str, seed: int) -> str | None:
    """Record the seed; None when it was written, else why not (a read-only spec directory: the
    run goes on without it)."""
    path = path_for(spec_path)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".last-seed-", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(f"{seed}\n")
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        return f"cannot write {path}: {exc.strerror or exc}"
    return None
