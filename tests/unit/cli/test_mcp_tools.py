"""The MCP tools that run nothing: a saved result's report, the documents, summaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from faultbox.cli import mcp_tools
from faultbox.cli.mcp_tools import Call, Toolbox, find_docs, summarize
from faultbox.model.event import Event
from faultbox.model.result import Diagnostic, Outcome, RunResult, TestResult, Violation
from faultbox.report import json_results


@pytest.fixture
def box() -> Any:
    b = Toolbox()
    yield b
    b.close()


def _event(seq: int) -> dict[str, Any]:
    event = Event("stdout", "svc", {"line": f"line {seq}"})
    event.seq = seq
    return event.to_dict()


def _result() -> RunResult:
    before = [_event(i) for i in range(20)]
    failed = TestResult(
        "test_bad",
        Outcome.FAILED,
        reason="assert_eq failed: 1 != 2",
        location="spec.star:4",
        replay="faultbox test spec.star --test test_bad --seed 3",
        events=[Event("stdout", "svc", {"line": "x"})],
        violation=Violation("no_loss", "lost an order", 20, _event(20), before),
        diagnostics=[Diagnostic("warning", "FAULT_NOT_FIRED", "the fault never fired")],
    )
    return RunResult("spec.star", 3, 0.0, tests=[TestResult("test_good", Outcome.PASSED), failed])


def test_a_summary_has_no_events_and_a_short_violation() -> None:
    summary = summarize(_result())
    assert summary["exit_code"] == 2 and summary["counts"]["fail"] == 1
    good, bad = summary["tests"]
    assert good["outcome"] == "passed" and "events" not in bad and bad["event_count"] == 1
    assert bad["replay"] == "faultbox test spec.star --test test_bad --seed 3"
    assert bad["violation"]["message"] == "lost an order"
    assert [e["seq"] for e in bad["violation"]["before"]] == [15, 16, 17, 18, 19]
    assert bad["diagnostics"][0]["code"] == "FAULT_NOT_FIRED" and bad["diagnostics"][0]["hint"]


def test_show_report_renders_a_saved_result(box: Toolbox, tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    json_results.write(_result(), str(path))
    result = box.call("show_report", {"results": str(path)}, Call())
    assert not result.is_error
    assert "FAIL test_bad" in result.text[0] and "1 passed, 1 failed" in result.text[0]
    assert result.structured is not None and result.structured["tests"][1]["name"] == "test_bad"


def test_show_report_of_a_file_that_is_no_result(box: Toolbox, tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    result = box.call("show_report", {"results": str(tmp_path / "x.json")}, Call())
    assert result.is_error and "[RESULTS_UNREADABLE]" in result.text[0] and "fix:" in result.text[0]


def test_docs_are_found_beside_the_package() -> None:
    names = [d.name for d in find_docs()]
    assert names[0] == "README.md" and "spec-language.md" in names and "mcp.md" in names


def test_docs_shipped_in_the_package_come_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = tmp_path / "_docs"
    shipped.mkdir()
    (shipped / "README.md").write_text("# faultbox\n")
    (shipped / "errors.md").write_text("# Error codes\n")
    monkeypatch.setattr(mcp_tools, "docs_dirs", lambda: [shipped, tmp_path / "elsewhere"])
    docs = find_docs()
    assert [(d.name, d.title) for d in docs] == [("README.md", "faultbox"), ("errors.md", "Error codes")]
    monkeypatch.setattr(mcp_tools, "docs_dirs", lambda: [tmp_path / "nowhere"])
    assert find_docs() == []


def test_read_doc_by_name_with_or_without_md(box: Toolbox) -> None:
    for name in ("errors.md", "errors", "faultbox://docs/errors.md"):
        result = box.call("read_doc", {"name": name}, Call())
        assert not result.is_error and "# Error and warning codes" in result.text[0]


def test_a_cancelled_call_starts_nothing(box: Toolbox) -> None:
    call = Call()
    call.cancel()
    result = box.call("check_spec", {"source": "x = 1"}, call)
    assert result.is_error and "cancelled" in result.text[0]
    assert list(box.workdir.iterdir()) == [], "the inline spec is removed"
