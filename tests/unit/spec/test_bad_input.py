"""Inputs that once escaped as tracebacks or misleading errors: each is a SpecError with its code,
file:line and a fix."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from faultbox._util.durations import DurationError, parse_duration
from faultbox.errors import Code, SpecError
from faultbox.spec import load_spec


def _error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_spec(str(path))
    return caught.value


def _error_quickly(path: Path) -> SpecError:
    """The error of a spec whose mistake would otherwise run for ever or fill the memory: refused
    before any of that starts."""
    started = time.monotonic()
    err = _error(path)
    assert time.monotonic() - started < 2.0
    return err


def test_a_keyword_given_twice_is_a_syntax_error_at_its_line(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text('def test_x():\n    fault(None, write = deny("EIO"), write = deny("EIO"))\n')
    err = _error(spec)
    assert err.code is Code.SPEC_SYNTAX and "keyword argument repeated: write" in err.render()
    assert f"{spec}:2:" in err.render()


def test_a_file_that_is_not_utf8_names_the_line_and_byte(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_bytes(b'x = 1\ny = "\xff"\n')
    err = _error(spec)
    rendered = err.render()
    assert err.code is Code.SPEC_SYNTAX and f"{spec}:2:6" in rendered and "0xff" in rendered
    assert "save the spec as UTF-8" in rendered


def test_a_missing_file_is_still_not_found(tmp_path: Path) -> None:
    assert _error(tmp_path / "nope.star").code is Code.SPEC_NOT_FOUND


def test_durations_beyond_a_week_are_refused(tmp_path: Path) -> None:
    assert parse_duration("168h") == 7 * 24 * 3600
    with pytest.raises(DurationError, match="longer than the longest"):
        parse_duration("9999999999999999999999h")
    spec = tmp_path / "spec.star"
    spec.write_text('d = delay("9999999999999999999999h")\n')
    err = _error(spec)
    assert err.code is Code.SPEC_BAD_ARGUMENT and f"{spec}:1" in err.render()


def test_a_monitor_that_acts_is_refused_when_the_spec_loads(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text(
        'svc = service("svc", "sleep", args = ["60"])\n'
        "def meddle(e):\n"
        '    if e.type == "x":\n'
        '        fault_start(svc, write = deny("EIO"))\n'
        "m = monitor(meddle)\n"
        'n = monitor("s", on = lambda e: True, check = lambda e, s: sleep("1s"))\n'
    )
    err = _error(spec)
    rendered = err.render()
    assert "the monitor calls fault_start() (line 4)" in rendered and f"{spec}:5" in rendered, rendered
    spec.write_text('n = monitor("s", on = lambda e: True, check = lambda e, s: [service("x", "sleep")])\n')
    assert "calls service()" in _error(spec).render()


@pytest.mark.parametrize(
    "expression",
    [
        "-" * 50_000 + "1",  # the parser gives up: MemoryError ("too complex")
        "(1" + " + 1" * 10_000 + ")",  # RecursionError during ast construction
        "(" + "lambda: " * 3_000 + "1)",
    ],
)
def test_an_expression_too_deep_to_parse_is_a_syntax_error_at_its_line(tmp_path: Path, expression: str) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text(f"x = 1\ny = {expression}\nz = 2\n")
    err = _error(spec)
    assert err.code is Code.SPEC_SYNTAX and "nested thousands of levels deep" in err.message, err.render()
    assert err.location is not None and err.location.line == 2 and err.hint


@pytest.mark.parametrize(
    "expression",
    ["-" * 400 + "1", "(1" + " + 1" * 300 + ")", "x" + ".y" * 300, "(1" + " if True else 1" * 400 + ")"],
)
def test_an_expression_too_deep_to_check_is_a_syntax_error_where_it_is_deepest(tmp_path: Path, expression: str) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text(f"x = 1\ndef f():\n    return {expression}\n")
    err = _error(spec)
    assert err.code is Code.SPEC_SYNTAX and "levels deep" in err.message, err.render()
    assert err.location is not None and err.location.line == 3 and err.location.col > 0 and err.hint


def test_a_long_dotted_import_is_refused_before_the_parser_spends_seconds_on_it(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text("x = 1\nimport " + ".".join(["os"] * 50_000) + "\n")
    err = _error_quickly(spec)
    assert err.code is Code.SPEC_NOT_STARLARK and "`import`" in err.message
    assert err.location is not None and err.location.line == 2


def test_a_range_of_billions_is_refused_instead_of_looping_for_ever(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text("x = 1\ny = [i for i in range(9999999999)]\nz = max(range(10 * 1000000000000000000000000000000))\n")
    err = _error_quickly(spec)
    assert err.code is Code.SPEC_BAD_ARGUMENT and "range() of more than 10,000,000 numbers" in err.message
    assert err.location is not None and err.location.line == 2
    spec.write_text("z = max(range(10 * 1000000000000000000000000000000))\n")
    assert "range(a huge number)" in _error(spec).message
    spec.write_text("def test_x():\n    pass\nn = len([i for i in range(1000)]) + max(range(-5, 5, 2))\n")
    assert load_spec(str(spec)).root.globals["n"] == 1003


def test_a_repetition_of_billions_is_refused_before_it_is_built(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text('x = 1\ny = "ab" * 4000000000\n')
    err = _error_quickly(spec)
    assert err.code is Code.SPEC_BAD_ARGUMENT and "a repetition of more than 10,000,000 items" in err.message
    assert "string of 2 * 4,000,000,000" in err.message
    assert err.location is not None and err.location.line == 2
    spec.write_text("def f():\n    q = [0, 1]\n    q *= 6000000\n    return q\nx = f()\n")
    err = _error(spec)
    assert "list of 2 * 6,000,000" in err.message and err.location is not None and err.location.line == 3
    spec.write_text(
        'def test_x():\n    pass\ndef f():\n    q = "e"\n    q *= 2\n    return q\n'
        'v = ["ab" * 3, [0] * 2, 3 * 7, 2 * "cd", f(), 1.5 * 2, "x" * -1]\n'
    )
    assert list(load_spec(str(spec)).root.globals["v"]) == ["ababab", [0, 0], 21, "cdcd", "ee", 3.0, ""]
    # checked without recursion: an expression nested as deep as the dialect allows still loads
    spec.write_text("def test_x():\n    pass\nv = " + "[" * 150 + "2 * 3 * 4" + "]" * 150 + "\n")
    v = load_spec(str(spec)).root.globals["v"]
    for _ in range(150):
        v = v[0]
    assert v == 24


def test_a_bad_argument_to_a_stdlib_helper_is_reported_at_the_users_call(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text('load("@faultbox/services.star", "kafka")\n\nbus = kafka("", topics = ["t"])\n')
    err = _error(spec)
    assert err.code is Code.SPEC_BAD_ARGUMENT and "invalid name ''" in err.message
    assert err.location is not None and (err.location.file, err.location.line) == (str(spec), 3), err.render()


def test_running_out_of_memory_while_loading_says_so() -> None:
    from faultbox.spec.compile import exception_message

    assert exception_message(MemoryError()).startswith("out of memory: a value here is too large to build")
