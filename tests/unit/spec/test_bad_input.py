"""Inputs that once escaped as tracebacks or misleading errors: each is a SpecError with its code,
file:line and a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from faultbox._util.durations import DurationError, parse_duration
from faultbox.errors import Code, SpecError
from faultbox.spec import load_spec


def _error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_spec(str(path))
    return caught.value


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
