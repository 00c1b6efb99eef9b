"""test(), eventually(), always() and assume() at load: what they declare, and each bad input a
SpecError naming the spec line with a fix (never a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from faultbox.errors import Code, SpecError
from faultbox.model.matcher import Matcher
from faultbox.spec import load_spec


def _load(tmp_path: Path, text: str) -> object:
    spec = tmp_path / "spec.star"
    spec.write_text(text)
    return load_spec(str(spec))


def _error(tmp_path: Path, text: str) -> tuple[SpecError, str]:
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, text)
    return caught.value, caught.value.render()


def test_test_declares_a_named_test_with_its_properties(tmp_path: Path) -> None:
    spec = _load(
        tmp_path,
        "def body():\n    pass\n"
        "E = eventually(match.event(type='wal'), anchor=lambda e: e.type == 'step_send')\n"
        "A = always(lambda t: True, between=('body_start', match.event(type='x')))\n"
        "test('one', body=body, expect=[E, A], timeout='5s', terminate_when=eventually(lambda t: True),\n"
        "     assume=[True])\n"
        "def test_plain():\n    pass\n",
    )
    case = spec.test("test_one")  # type: ignore[attr-defined]
    assert case is not None and case.temporal is not None
    t = case.temporal
    assert t.timeout == 5.0 and t.assume == (True,) and t.location.line == 5
    e, a = t.expect
    assert (e.kind, e.location.line, isinstance(e.matcher, Matcher), isinstance(e.anchor, Matcher)) == (
        "eventually", 3, True, True,
    )  # fmt: skip
    assert a.kind == "always" and a.start == "body_start" and isinstance(a.end, Matcher)
    assert [c.name for c in spec.tests] == ["test_one", "test_plain"]  # type: ignore[attr-defined]


BAD = [
    ("eventually(42)\n", "eventually(): predicate must be a function of the trace or a matcher, got int", 1),
    ("eventually('x')\n", "got string", 1),
    ("eventually(lambda: True)\n", "cannot be called with the trace (one argument)", 1),
    (
        "x = 1\neventually(lambda t: True, anchor=3)\n",
        "anchor must be a matcher or a function of the event, got int",
        2,
    ),
    ("always(match.event(type='x'))\n", "always(): predicate must be a function of the trace, not a matcher", 1),
    (
        "always(lambda t: True, between=('body_start', 'later'))\n",
        'unknown end anchor "later": the anchors are "body_start", "body_end", "stable" or a matcher',
        1,
    ),
    ("always(lambda t: True, between='stable')\n", "between= must be a pair (start, end), got string", 1),
    ("always(lambda t: True, between=('body_end', 'stable'))\n", 'a window cannot start at "body_end"', 1),
    ("def b():\n    pass\ntest('x', body=b)\ntest('x', body=b)\n", 'a test named "x" is already declared', 4),
    ("def b():\n    pass\ntest('x', body=b, clock='virtual')\n", 'clock="virtual" is not supported', 3),
    ("def b():\n    pass\ntest('x', body=b, expect=[eventually(lambda t: True), 3])\n", "expect[1] must be an", 3),
    ("def b():\n    pass\ntest('x', body=b, terminate_when=lambda t: True)\n", "terminate_when= must be an", 3),
    ("def b():\n    pass\ntest('x', body=b, assume=True)\n", "assume= must be a list of functions or bools", 3),
    ("def b():\n    pass\ntest('x', body=b, assume=['yes'])\n", "assume[0] must be a function or a bool", 3),
    ("def b(x):\n    pass\ntest('x', body=b)\n", "cannot be called with no arguments", 3),
    ("test('x', body=3)\n", "body= must be a function, got int", 1),
    ("def b():\n    pass\ntest('x', body=b, timeout='0s')\n", "timeout= must be longer than 0", 3),
    ("def b():\n    pass\ndef test_x():\n    pass\ntest('x', body=b)\n", "test(): test_x is already a test", 5),
]


@pytest.mark.parametrize(("text", "message", "line"), BAD)
def test_bad_input_is_an_error_at_its_line(tmp_path: Path, text: str, message: str, line: int) -> None:
    err, rendered = _error(tmp_path, text)
    assert err.code in (Code.SPEC_BAD_ARGUMENT, Code.SPEC_LOAD_FAILED)
    assert message in rendered, rendered
    assert f"spec.star:{line}" in rendered, rendered
    assert "Traceback" not in rendered


def test_assume_at_the_top_level(tmp_path: Path) -> None:
    _load(tmp_path, "assume(True)\nassume(lambda c: c == {})\n")
    err, rendered = _error(tmp_path, "x = 2\nassume(lambda c: x > 3)\n")
    assert err.code is Code.SPEC_LOAD_FAILED
    assert "assume(lambda c: x > 3) violated at spec load" in rendered and "spec.star:2" in rendered
    err, rendered = _error(tmp_path, "assume(False)\n")
    assert "assume(False) violated at spec load" in rendered
    err, rendered = _error(tmp_path, "assume(3)\n")
    assert "assume(): the argument must be a function of the choices or a bool, got int" in rendered
