"""Every chunk of tests/specs/*.star loads, or fails with the code, line and message it announces."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from faultbox.errors import SpecError
from faultbox.spec import load_spec

CORPUS = Path(__file__).resolve().parents[2] / "specs"
MARK = re.compile(r'###\s+(\w+)\s+"(.*)"\s*$')


def chunks() -> list[tuple[str, int, str]]:
    out = []
    for path in sorted(CORPUS.glob("*.star")):
        for i, chunk in enumerate(path.read_text().split("\n---\n")):
            out.append((path.name, i, chunk))
    return out


@pytest.mark.parametrize(("file", "index", "chunk"), chunks(), ids=[f"{f}#{i}" for f, i, _ in chunks()])
def test_chunk(tmp_path: Path, file: str, index: int, chunk: str) -> None:
    lines = chunk.splitlines()
    expected = [(n + 1, MARK.search(line)) for n, line in enumerate(lines) if MARK.search(line)]
    source = "\n".join(MARK.sub("", line).rstrip() for line in lines) + "\n"
    path = tmp_path / "chunk.star"
    path.write_text(source)
    if not expected:
        load_spec(str(path))
        return
    line, mark = expected[0]
    assert mark is not None
    with pytest.raises(SpecError) as info:
        load_spec(str(path))
    err = info.value
    rendered = err.render()
    assert err.code.value == mark.group(1), rendered
    assert re.search(mark.group(2), f"{err.message}\n{err.hint}", re.DOTALL), rendered
    assert err.location is not None and err.location.line == line, rendered
    assert err.hint, "every spec error carries a fix"
    assert "Traceback" not in rendered
