"""The whole result of a run, with every event, as JSON; and back (`faultbox report` renders a saved
result again)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import IO, Any

from faultbox.errors import Code, UsageError
from faultbox.model.result import SCHEMA_VERSION, RunResult, TestResult


class ResultsError(UsageError):
    """A file that is not a faultbox result this version can read."""

    code = Code.RESULTS_UNREADABLE


def dump(result: RunResult, out: IO[str], *, with_events: bool = True) -> None:
    json.dump(result.to_dict(with_events), out, indent=2, default=_default, ensure_ascii=False)
    out.write("\n")


def write(result: RunResult, path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        dump(result, f)
    os.replace(tmp, path)


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


class PartialResults:
    """A run listener that keeps the result file up to date after every test, marked interrupted,
    so a runner that dies (killed, or aborted by a native library) leaves the tests it finished.
    The complete result replaces it when the run ends.

    The file is valid JSON after every test, and each test costs only its own bytes: the tests
    array is the file's last member, and a finished test is written in place of the closing
    brackets, with the brackets after it, in one write. A kill can still cut a write short at a page
    boundary (a fatal signal ends a long write there): each test is one line, so `read` recovers
    such a file up to its last whole test."""

    _CLOSE = "\n]}\n"

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None
        self._end = 0  # where the closing brackets start
        self._count = 0

    def run_started(self, run: RunResult, tests: Sequence[str]) -> None:
        # Everything the run knows at its start (a shard's index and suite, the variables): a
        # killed shard's file is still a shard that `report merge` can name.
        header = dataclasses.replace(run, tests=[], interrupted=True).to_dict()
        for key in ("tests", "matrix", "counts"):  # tests come last, one by one; the rest is the run's
            header.pop(key, None)
        opening = json.dumps(header, default=_default, ensure_ascii=False)[:-1] + ', "tests": [\n'
        data = opening.encode()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(self._fd, data + self._CLOSE.encode())
        self._end = len(data)
        self._count = 0

    def test_started(self, name: str) -> None:
        pass

    def test_finished(self, result: TestResult) -> None:
        if self._fd is None:
            return
        item = json.dumps(result.to_dict(), default=_default, ensure_ascii=False).encode()
        sep = b",\n" if self._count else b""
        os.pwrite(self._fd, sep + item + self._CLOSE.encode(), self._end)
        self._end += len(sep) + len(item)
        self._count += 1

    def run_finished(self, result: RunResult) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read(path: str) -> RunResult:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        raise ResultsError(f"{path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        recovered = _cut_short(text)
        if recovered is None:
            raise ResultsError(f"{path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg})") from None
        data = recovered
    if not isinstance(data, dict) or "tests" not in data or "schema" not in data:
        raise ResultsError(f"{path}: not a faultbox result (write one with faultbox test --output FILE)")
    if data["schema"] != SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: result schema {data['schema']}, this faultbox reads schema {SCHEMA_VERSION}; "
            "run the tests again with this version"
        )
    try:
        return RunResult.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ResultsError(f"{path}: a faultbox result with a missing or malformed part ({exc!r})") from None


def _cut_short(text: str) -> dict[str, Any] | None:
    """The results a run killed in the middle of a write left: PartialResults' file up to its last
    whole test (one line each), closed again; None when the text is not such a file."""
    lines = text.split("\n")
    if len(lines) < 2 or not lines[0].endswith('"tests": ['):
        return None
    # The whole text closed, then without the torn line(s): a kill tears the last write only, so a
    # few tries suffice (and a file damaged elsewhere is refused at once, not parsed once a line).
    for end in range(len(lines), max(len(lines) - 3, 0), -1):
        body = "\n".join(lines[:end]).rstrip().rstrip(",")
        try:
            data = json.loads(body + "\n]}")
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("interrupted") is True:
            return data
        return None
    return None
