"""faultbox check's notes on where a spec meets a deliberate difference from the reference
(docs/decisions.md): one `info` finding per kind, at its first place, naming the section."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from faultbox.errors import Code
from faultbox.spec import load_spec
from faultbox.spec.plan import DIFFERENCES, Finding, _syntax_differences, reference_differences

ROOT = Path(__file__).resolve().parents[3]

BASE = """
db = service("db", "/bin/sleep", interface("main", "tcp", 19201), args = ["60"])
slow = fault_assumption("slow", target = db, write = delay("5ms"))

def create():
    db.main.send(data = "x")
"""


def _notes(tmp_path: Path, extra: str) -> list[Finding]:
    path = tmp_path / "spec.star"
    path.write_text(BASE + extra)
    return reference_differences(load_spec(str(path)))


def test_a_spec_that_meets_no_difference_has_no_note(tmp_path: Path) -> None:
    extra = """
fault_scenario("judged", scenario = create, faults = slow, expect = expect_success())

def test_plain():
    assert_eventually(type = "mock", op = "POST /x")
    parallel(create, create, interleavings = 1)
"""
    assert _notes(tmp_path, extra) == []


def test_an_expect_function_is_noted_once_at_its_first_place(tmp_path: Path) -> None:
    extra = """
fault_scenario("b", scenario = create, faults = slow, expect = lambda r: r.ok)

def judge(r):
    return r.ok

fault_scenario("a", scenario = create, faults = slow, expect = judge)
fault_matrix(scenarios = [create], faults = [slow], default_expect = lambda r: None)
"""
    [note] = _notes(tmp_path, extra)
    assert note.level == "info" and note.code is Code.DIFFERS_FROM_REFERENCE
    assert note.location.endswith("spec.star:8")  # the first in the file, not the first test by name
    assert "returns False" in note.message and "(2 more places alike)" in note.message
    assert 'docs/decisions.md, "Verdicts: stricter where the reference lets a test pass"' in note.hint
    assert note.to_dict()["suggestion"] == note.hint


def test_one_note_per_kind_in_the_order_of_decisions(tmp_path: Path) -> None:
    extra = """
cache = service("cache", "/bin/sleep", interface("main", "tcp", 19202), args = ["60"], reuse = True)

def test_x():
    parallel(create, create, interleavings = 4)
    events(type = "mock.POST /v1/charges")
    assert_before(first = {"type": "mock.GET /v1/a"}, then = {"type": "stdout"})

m = monitor(lambda e: None, type = "mock.POST /v1/charges")
fault_scenario("s", scenario = create, faults = slow, expect = lambda r: None, monitors = [m])
"""
    notes = _notes(tmp_path, extra)
    kinds = [n.message.split(" ", 1)[0] for n in notes]
    assert len(notes) == 4, [n.message for n in notes]
    assert kinds[0] == "test_s:"  # expect
    assert notes[1].message.startswith('type="mock.POST /v1/charges"') and notes[1].location.endswith(":12:19")
    assert "(2 more places alike)" in notes[1].message
    assert notes[2].message.startswith('service "cache" has reuse=True') and notes[2].location.endswith("spec.star:8")
    assert notes[3].message.startswith("parallel(..., interleavings=)")
    assert '"Services and faults"' in notes[3].hint
    assert {n.level for n in notes} == {"info"}


def test_an_openapi_mock_without_validate_is_noted() -> None:
    def kinds(source: str) -> list[str]:
        return [k for node in ast.walk(ast.parse(source)) for k, _, _ in _syntax_differences(node)]

    assert kinds('mock_service("pay", interface("main", "http", 1), openapi = "pay.yaml")') == ["openapi_validate"]
    assert kinds('mock_service("pay", interface("main", "http", 1), openapi = "p.yaml", validate = "off")') == []


def test_every_note_names_a_section_of_decisions() -> None:
    sections = set(re.findall(r"^## (.+)$", (ROOT / "docs" / "decisions.md").read_text(), re.MULTILINE))
    assert set(DIFFERENCES.values()) <= sections
