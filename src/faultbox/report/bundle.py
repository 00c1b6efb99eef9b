"""Failure bundles (`.fb`): everything it takes to look at, and run again, one test that failed.

A bundle is one zip file:

    manifest.json      format, faultbox version, created, test, seed, variables, decisions, timeout,
                       the spec (relative to its directory), the files, the files left out and why
    environment.json   facts about the machine that ran it (versions, kernel, privileges)
    result.json        the test's result (TestResult.to_dict, without its events)
    trace.jsonl        the test's events, one JSON object a line
    spec/<path>        the spec and every file it loaded or read, relative to the spec's directory

Writing and reading only: this module runs nothing (the command line replays a bundle). Entries
have a fixed date, so the same failure makes the same bytes but for `created`."""

from __future__ import annotations

import io
import json
import os
import re
import time
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from faultbox import __version__
from faultbox.errors import Code, UsageError
from faultbox.model.event import Event
from faultbox.model.result import RunResult, TestResult

FORMAT = 1  # the manifest's "format": what this faultbox writes and reads
SUFFIX = ".fb"
KEEP = 50  # bundles kept per directory: the newest
MANIFEST, ENVIRONMENT, RESULT, TRACE = "manifest.json", "environment.json", "result.json", "trace.jsonl"
SPEC = "spec/"
_ZIP_MAGIC = b"PK\x03\x04"
_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: entries carry no build time


class BundleError(UsageError):
    """A file that is not a bundle, or one damaged on the way."""

    code = Code.BUNDLE_UNREADABLE


class BundleVersionError(UsageError):
    """A bundle in a format this faultbox does not read."""

    code = Code.BUNDLE_VERSION


@dataclass
class Bundle:
    path: str
    manifest: dict[str, Any]
    environment: dict[str, Any]
    result: TestResult
    files: dict[str, bytes] = field(default_factory=dict)  # spec-relative path -> content

    @property
    def test(self) -> str:
        return str(self.manifest["test"])

    @property
    def seed(self) -> int:
        return int(self.manifest["seed"])

    @property
    def spec(self) -> str:
        """The spec's path inside spec/ (its name: the spec's directory is spec/ itself)."""
        return str(self.manifest["spec"])

    @property
    def variables(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.manifest.get("variables") or {}).items()}

    @property
    def decisions(self) -> str:
        return str(self.manifest.get("decisions") or "")

    @property
    def timeout(self) -> float:
        return float(self.manifest.get("timeout") or 120.0)

    @property
    def skipped(self) -> list[dict[str, str]]:
        return list(self.manifest.get("skipped") or [])

    def run_result(self) -> RunResult:
        """The test's result as a run of that one test: what `faultbox report` renders."""
        self.result.bundle = self.path
        return RunResult(
            spec=str(self.manifest.get("spec_arg") or self.spec),
            seed=self.seed,
            started=self.result.started,
            duration_ms=self.result.duration_ms,
            tests=[self.result],
            variables=self.variables,
            environment={str(k): str(v) for k, v in self.environment.items()},
        )

    def extract(self, directory: str) -> str:
        """Write the bundled files under `directory` (the spec's directory as it was); the spec's path."""
        for rel, data in self.files.items():
            target = os.path.join(directory, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
        return os.path.join(directory, self.spec)


def file_name(test: str, seed: int) -> str:
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', test)}-{seed}{SUFFIX}"


def collect(spec_path: str, files: Sequence[str]) -> tuple[dict[str, bytes], list[dict[str, str]]]:
    """The files to bundle, by path relative to the spec's directory, and the ones left out with
    why: outside the spec's directory (a replay could not put them back where the spec looks), or
    unreadable now."""
    base = os.path.dirname(os.path.abspath(spec_path))
    found: dict[str, bytes] = {}
    skipped: list[dict[str, str]] = []
    for path in dict.fromkeys(os.path.abspath(p) for p in [spec_path, *files]):
        rel = os.path.relpath(path, base)
        if rel.startswith(os.pardir + os.sep) or rel == os.pardir:
            skipped.append({"path": path, "why": "outside the spec's directory"})
            continue
        try:
            with open(path, "rb") as f:
                found[rel.replace(os.sep, "/")] = f.read()
        except OSError as exc:
            skipped.append({"path": path, "why": f"cannot be read: {exc.strerror or exc}"})
    return found, skipped


def write(
    path: str,
    *,
    spec_path: str,
    files: Sequence[str],
    result: TestResult,
    seed: int,
    variables: Mapping[str, str],
    environment: Mapping[str, Any],
    timeout: float,
    spec_arg: str = "",
) -> None:
    """Write the bundle of one test's result (atomically: a reader never sees half a bundle)."""
    contents, skipped = collect(spec_path, files)
    manifest = {
        "format": FORMAT,
        "faultbox": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "test": result.name,
        "seed": seed,
        "spec": os.path.basename(spec_path),
        "spec_arg": spec_arg or spec_path,
        "spec_dir": os.path.dirname(os.path.abspath(spec_path)),
        "variables": dict(sorted(variables.items())),
        "decisions": result.decisions,
        "timeout": timeout,
        "verdict": result.verdict.value,
        "outcome": result.outcome.value,
        "files": sorted(contents),
        "skipped": skipped,
    }
    recorded = result.to_dict(with_events=False)
    recorded.pop("bundle", None)  # where the bundle is, is not the bundle's to say
    trace = "".join(json.dumps(e.to_dict(), default=repr, ensure_ascii=False) + "\n" for e in result.events)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        _put(zf, MANIFEST, _json(manifest))
        _put(zf, ENVIRONMENT, _json(dict(environment)))
        _put(zf, RESULT, _json(recorded))
        _put(zf, TRACE, trace.encode())
        for rel in sorted(contents):
            _put(zf, SPEC + rel, contents[rel])
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp")
    with open(tmp, "wb") as f:
        f.write(buffer.getvalue())
    os.replace(tmp, path)


def _put(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, _DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, default=repr, ensure_ascii=False) + "\n").encode()


def is_bundle(path: str) -> bool:
    """A file to read as a bundle rather than a JSON result: named .fb, or a zip archive."""
    if path.endswith(SUFFIX):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == _ZIP_MAGIC
    except OSError:
        return False


def read(path: str) -> Bundle:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise BundleError(f"{path}: {exc.strerror or exc}") from None
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile:
        if raw.startswith(_ZIP_MAGIC):
            raise BundleError(f"{path}: a zip archive cut short or damaged (its directory is missing)") from None
        raise BundleError(f"{path}: not a faultbox bundle (a bundle is a zip archive; this is not one)") from None
    with zf:
        names = set(zf.namelist())
        if MANIFEST not in names:
            raise BundleError(f"{path}: a zip archive, but not a faultbox bundle (it has no {MANIFEST})")
        manifest = _member_json(zf, path, MANIFEST)
        if not isinstance(manifest, dict) or "format" not in manifest:
            raise BundleError(f"{path}: {MANIFEST} is not a faultbox bundle's manifest (it has no format)")
        _check_format(path, manifest)
        for name in (RESULT, TRACE):
            if name not in names:
                raise BundleError(f"{path}: damaged: {name} is missing")
        environment = _member_json(zf, path, ENVIRONMENT) if ENVIRONMENT in names else {}
        recorded = _member_json(zf, path, RESULT)
        trace = _member(zf, path, TRACE).decode("utf-8", errors="replace")
        files: dict[str, bytes] = {}
        for name in sorted(names):
            if name.startswith(SPEC) and not name.endswith("/"):
                rel = name[len(SPEC) :]
                if rel.startswith("/") or ".." in rel.split("/"):
                    raise BundleError(f"{path}: damaged: the file {name!r} would land outside the spec's directory")
                files[rel] = _member(zf, path, name)
    missing = [key for key in ("test", "seed", "spec") if key not in manifest]
    if missing:
        raise BundleError(f"{path}: damaged: its manifest has no {', '.join(missing)}")
    try:
        int(manifest["seed"])
        result = TestResult.from_dict(recorded)
        result.events = [Event.from_dict(json.loads(line)) for line in trace.splitlines() if line.strip()]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"{path}: damaged: a missing or malformed part ({exc!r})") from None
    if manifest["spec"] not in files:
        raise BundleError(f"{path}: damaged: the spec {manifest['spec']} is not in it")
    if not isinstance(environment, dict):
        environment = {}
    return Bundle(path, manifest, environment, result, files)


def _check_format(path: str, manifest: Mapping[str, Any]) -> None:
    fmt = manifest["format"]
    writer = manifest.get("faultbox", "an unknown version")
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise BundleError(f"{path}: its manifest's format is {fmt!r}, not a number")
    if fmt > FORMAT:
        raise BundleVersionError(
            f"{path}: bundle format {fmt}, written by faultbox {writer}; this faultbox ({__version__}) reads "
            f"format {FORMAT}: upgrade faultbox to read it"
        )
    if fmt < FORMAT:
        raise BundleVersionError(
            f"{path}: bundle format {fmt}, written by faultbox {writer}, is older than this faultbox "
            f"({__version__}) reads (format {FORMAT})"
        )


def _member(zf: zipfile.ZipFile, path: str, name: str) -> bytes:
    try:
        return zf.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise BundleError(f"{path}: damaged: {name} cannot be read ({exc})") from None


def _member_json(zf: zipfile.ZipFile, path: str, name: str) -> Any:
    try:
        return json.loads(_member(zf, path, name).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: damaged: {name} is not JSON ({exc})") from None


def prune(directory: str, keep: int = KEEP) -> list[str]:
    """Remove all but the newest `keep` bundles of a directory; the paths removed."""
    try:
        entries = [e for e in os.scandir(directory) if e.name.endswith(SUFFIX) and e.is_file()]
    except OSError:
        return []
    entries.sort(key=lambda e: (e.stat().st_mtime_ns, e.name), reverse=True)
    removed = []
    for entry in entries[keep:]:
        try:
            os.unlink(entry.path)
            removed.append(entry.path)
        except OSError:
            pass  # another run removed it, or it is not ours to remove: the next run tries again
    return removed


__all__ = ["FORMAT", "KEEP", "Bundle", "BundleError", "BundleVersionError", "file_name", "is_bundle", "read", "write"]
