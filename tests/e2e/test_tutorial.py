"""The walkthrough's console excerpts are real: every `$ faultbox ...` block in docs/tutorial.md is run
and its lines must appear in the output, in order (numbers may differ: durations, in any unit, pids, seqs)."""

from __future__ import annotations

import re
import shlex

import pytest

from support import ROOT, faultbox_cli

TUTORIAL = ROOT / "docs" / "tutorial.md"


def blocks() -> list[tuple[list[str], list[str]]]:
    out = []
    for block in re.findall(r"```\n(\$ faultbox .*?)```", TUTORIAL.read_text(), re.DOTALL):
        lines = block.rstrip("\n").splitlines()
        out.append((shlex.split(lines[0][2:])[1:], lines[1:]))
    return out


def normal(line: str) -> str:
    line = re.sub(r"\b\d+(\.\d+)?(µs|ms|s|m)\b", "DURATION", line.rstrip())
    return re.sub(r"\d+(\.\d+)?", "N", line)


@pytest.mark.parametrize(("argv", "expected"), blocks(), ids=[" ".join(a) for a, _ in blocks()])
def test_excerpt_is_real(argv: list[str], expected: list[str]) -> None:
    result = faultbox_cli(*argv, cwd=ROOT)
    got = [normal(line) for line in (result.stdout + result.stderr).splitlines()]
    position = 0
    for line in expected:
        if line.strip() in ("...", ""):
            continue
        want = normal(line)
        while position < len(got) and got[position] != want:
            position += 1
        output = result.stdout + result.stderr
        assert position < len(got), f"not in the output of {argv}: {line!r}\n--- output:\n{output}"
        position += 1
