from __future__ import annotations

from faultbox.errors import HINTS, Code, SourceLocation, SpecError


def test_every_code_has_a_hint() -> None:
    assert set(HINTS) == set(Code)
    assert all(h.strip() for h in HINTS.values())


def test_render_points_at_the_column() -> None:
    err = SpecError(
        Code.SPEC_UNDEFINED, "undefined name 'x'", SourceLocation("a.star", 3, 13), None, "        y = x + 1"
    )
    text = err.render()
    assert text.splitlines()[0] == "a.star:3:13: error [SPEC_UNDEFINED]: undefined name 'x'"
    assert text.splitlines()[1] == "    y = x + 1"
    assert text.splitlines()[2] == "        ^"  # under the x, with the line's indentation removed
