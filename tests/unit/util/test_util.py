from __future__ import annotations

import pytest

from faultbox._util.durations import DurationError, format_duration, parse_duration
from faultbox._util.frozen import FrozenError, freeze
from faultbox._util.globs import field_match, path_match
from faultbox.model.fault import ProbabilityError, parse_probability


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("1.5s", 1.5), ("2m", 120), ("100us", 1e-4), ("1h30m", 5400), ("0", 0), ("250µs", 2.5e-4)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["500", "ms", "1.5 s", "", "5x"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(x) for x in (0.5, 1.5, 120, 0.0001, 0.001)] == ["500ms", "1.5s", "2m", "100us", "1ms"]


@pytest.mark.parametrize(
    ("value", "p"), [("20%", 0.2), ("1%", 0.01), (0.3, 0.3), (1, 1.0), ("0.5", 0.5), ("100%", 1.0)]
)
def test_probability(value: object, p: float) -> None:
    assert parse_probability(value) == pytest.approx(p)


@pytest.mark.parametrize("value", [30, "150%", "x", True, -0.1])
def test_probability_refuses(value: object) -> None:
    with pytest.raises(ProbabilityError):
        parse_probability(value)


@pytest.mark.parametrize(
    ("value", "pattern", "ok"),
    [
        ("deny(EIO)", "deny*", True),
        ("/tmp/a/inventory.wal", "*.wal", True),
        ("allow", "deny*", False),
        ("api", "api", True),
        ("api2", "api", False),
        ("b", "[abc]", True),
        (None, "*", False),
    ],
)
def test_field_match(value: str | None, pattern: str, ok: bool) -> None:
    assert field_match(value, pattern) is ok


@pytest.mark.parametrize(
    ("path", "pattern", "ok"),
    [
        ("/data/a.wal", "/data/*.wal", True),
        ("/data/x/a.wal", "/data/*.wal", False),
        ("/data/x/a.wal", "/data/**/*.wal", True),
        ("/data/a.wal", "/data/**/*.wal", True),
        ("/data", "/data/**", True),
        ("/data/x/y", "/data/**", True),
        ("/database", "/data/**", False),
        ("/tmp/f1", "/tmp/f?", True),
        ("/tmp/f12", "/tmp/f?", False),
    ],
)
def test_path_match(path: str, pattern: str, ok: bool) -> None:
    assert path_match(path, pattern) is ok


def test_freeze_is_deep() -> None:
    frozen = freeze({"a": [1, {"b": 2}]})
    with pytest.raises(FrozenError):
        frozen["a"].append(3)
    with pytest.raises(FrozenError):
        frozen["a"][1]["c"] = 1
    assert frozen == {"a": [1, {"b": 2}]}
