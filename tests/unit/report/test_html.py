"""The HTML report: server-side essentials, embedded JSON, escaping, matrix links, large traces."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from faultbox import __version__
from faultbox.model.event import Event
from faultbox.model.result import (
    Diagnostic,
    FaultRecord,
    MatrixCell,
    MatrixResult,
    Outcome,
    RunResult,
    TestResult,
    Violation,
)
from faultbox.report import html

HOSTILE = "</script><img src=x onerror=alert(1)> \"q\" 'a' & ünïcødé <!-- ✓"
ODD_NAME = 'test_odd "name" <b> ü#?'


# -- building results ------------------------------------------------------------------------


def _event(seq: int, type: str = "stdout", service: str = "api", **fields: str) -> Event:
    ev = Event(type, service, fields, ts=1000.0 + seq / 1000)
    ev.seq = seq
    return ev


def _trace() -> list[Event]:
    return [
        _event(1, "service_started", "api", pid="10"),
        _event(2, "stdout", "api", line=HOSTILE),
        _event(3, "syscall", "db", syscall="fsync", decision="deny(EIO)", path="/data/wal"),
        _event(4, "stdout", "api", status="confirmed"),
    ]


def _run() -> RunResult:
    violation = Violation(
        "no_confirm", f"confirmed: {HOSTILE}", 4, _event(4, status="confirmed").to_dict(),
        [_event(3, "syscall", "db", decision="deny(EIO)").to_dict()], "spec.star:9",
    )  # fmt: skip
    tests = [
        TestResult("test_ok", Outcome.PASSED, duration_ms=12, events=_trace(), replay="faultbox test s --test ok"),
        TestResult(
            "test_eq",
            Outcome.FAILED,
            reason="assert_eq failed: 201 != 418",
            location="spec.star:20",
            details={
                "assertion": "assert_eq",
                "expected": "418",
                "actual": "201",
                "printed": [HOSTILE],
                "nearest": ["#2 stdout api line=x"],
                "custom": {"k": HOSTILE},
            },
            replay=f"faultbox test s --test eq --var x='{HOSTILE}'",
        ),
        TestResult(
            "test_monitor",
            Outcome.FAILED,
            reason=f"monitor violated: {HOSTILE}",
            violation=violation,
            events=_trace(),
        ),
        TestResult(
            "test_matrix_create_disk",
            Outcome.EXPECTATION_VIOLATED,
            reason="expect_success: 503",
            matrix=("create", "disk"),
            assumptions=["disk"],
        ),
        TestResult(
            "test_matrix_create_slow",
            Outcome.FAULT_BYPASSED,
            reason="no syscall was faulted",
            matrix=("create", "slow"),
            assumptions=["slow"],
            faults=[FaultRecord("db", "fsync", "delay(20ms)", ["fsync", "fdatasync"], assumption="slow")],
            diagnostics=[Diagnostic("warning", "FAULT_NOT_FIRED", f"never matched {HOSTILE}", "db", "fsync")],
        ),
        TestResult("test_matrix_health_slow", Outcome.PASSED, matrix=("health", "slow"), assumptions=["slow"]),
        TestResult("test_infra", Outcome.ERRORED, reason="[INFRA] no seccomp"),
        TestResult("test_slow", Outcome.INCONCLUSIVE, reason="timed out"),
        TestResult("test_halted", Outcome.HALTED, reason="halt()"),
        TestResult(ODD_NAME, Outcome.FAILED, reason="odd\nsecond line"),
    ]
    matrix = MatrixResult(
        ["create", "health"],
        ["disk", "slow"],
        [
            MatrixCell("create", "disk", "test_matrix_create_disk", Outcome.EXPECTATION_VIOLATED, "expect_503"),
            MatrixCell("create", "slow", "test_matrix_create_slow", Outcome.FAULT_BYPASSED, HOSTILE),
            MatrixCell("health", "disk", "test_matrix_health_disk", None),
            MatrixCell("health", "slow", "test_matrix_health_slow", Outcome.PASSED),
        ],
    )
    return RunResult("specs/orders.star", 7, 1_700_000_000.0, 2345, tests, matrix, variables={"env": HOSTILE})


# -- reading the page ------------------------------------------------------------------------


class Page(HTMLParser):
    """Just enough of the DOM: elements with their attributes and the text outside scripts/styles."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[tuple[dict[str, str], str]] = []
        self.texts: list[str] = []
        self.matrix_links: list[str] = []
        self._stack: list[str] = []
        self._script: dict[str, str] | None = None
        self._in_matrix = 0
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a))
        if tag == "script":
            self._script = a
            self.scripts.append((a, ""))
        if tag == "table" and "matrix" in a.get("class", "").split():
            self._in_matrix += 1
        if tag == "a" and self._in_matrix:
            self.matrix_links.append(a["href"])
        self._stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None
        if tag == "table" and self._in_matrix:
            self._in_matrix -= 1
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        elif not self._stack or self._stack[-1] != "style":
            self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.elements if "id" in a}

    def by_class(self, cls: str) -> list[tuple[str, dict[str, str]]]:
        return [(t, a) for t, a in self.elements if cls in a.get("class", "").split()]

    def data(self) -> dict[str, Any]:
        found = [text for attrs, text in self.scripts if attrs.get("type") == "application/json"]
        assert len(found) == 1
        return json.loads(found[0], parse_constant=_reject)  # type: ignore[no-any-return]


def _reject(name: str) -> None:
    raise AssertionError(f"{name} is not JSON that a browser parses")


def _target(href: str) -> str:
    assert href.startswith("#"), href
    return unquote(href[1:])


# -- tests -----------------------------------------------------------------------------------


def test_embedded_json_round_trips() -> None:
    run = _run()
    expected = run.to_dict(with_events=False)
    for entry, t in zip(expected["tests"], run.tests, strict=True):
        entry["events"] = [e.to_dict() for e in t.events]
        entry["events_dropped"] = 0
    expected["events_downsampled"] = False
    expected["faultbox_version"] = __version__
    assert Page(html.render(run)).data() == json.loads(json.dumps(expected))


def test_hostile_strings_appear_only_escaped() -> None:
    page_text = html.render(_run())
    page = Page(page_text)
    # Only the report's own two scripts, and no element made from the data.
    assert [a.get("type", "") for a, _ in page.scripts] == ["application/json", ""]
    assert "img" not in {t for t, _ in page.elements}
    assert ODD_NAME in page.text
    assert "<img" not in page_text and "<!-- ✓" not in page_text
    # ...and they are still shown, as text: in the reason, the printed output, the diagnostics.
    assert page.text.count(HOSTILE) >= 4
    # Attribute values (tooltips, copy buttons) decode back to the original string.
    copy = [a["data-copy"] for _, a in page.by_class("copy")]
    assert f"faultbox test s --test eq --var x='{HOSTILE}'" in copy
    assert any(HOSTILE in a.get("title", "") for _, a in page.by_class("cell"))


def test_the_json_element_cannot_be_closed_by_data() -> None:
    payload = next(text for attrs, text in Page(html.render(_run())).scripts if attrs.get("id") == "faultbox-data")
    assert "<" not in payload and ">" not in payload and "&" not in payload


def test_summary_and_test_list_are_server_side_html() -> None:
    page = Page(html.render(_run()))
    text = page.text
    assert "specs/orders.star" in text
    assert "✗ 5 failed · 1 errored" in text
    assert "2 of 10 tests passed; 5 failed, 1 errored, 1 inconclusive, 1 halted." in text
    assert "assert_eq failed: 201 != 418" in text
    rows = [a for t, a in page.elements if t == "tr" and any(c.startswith("o-") for c in a.get("class", "").split())]
    assert len(rows) == 10
    for outcome in Outcome:
        assert page.by_class(f"o-{outcome.value}"), outcome


def test_every_test_has_an_anchor_and_failures_start_open() -> None:
    run = _run()
    page = Page(html.render(run))
    sections = {a["id"]: a for t, a in page.elements if t == "section" and "test" in a.get("class", "").split()}
    assert set(sections) == {f"test-{t.name}" for t in run.tests}
    opened = [t for t, a in page.elements if t == "details" and "open" in a]
    assert len(opened) == sum(1 for t in run.tests if t.outcome is not Outcome.PASSED)


def test_every_link_to_a_test_targets_an_existing_anchor() -> None:
    page = Page(html.render(_run()))
    ids = page.ids()
    links = [a["href"] for t, a in page.elements if t == "a" and a.get("href", "").startswith("#test-")]
    assert links
    for href in links:
        assert _target(href) in ids, href
    assert f"test-{ODD_NAME}" in {_target(h) for h in links}


def test_matrix_cells_link_to_their_tests_and_excluded_cells_do_not() -> None:
    page = Page(html.render(_run()))
    ids = page.ids()
    targets = [_target(h) for h in page.matrix_links]
    assert targets == [
        "test-test_matrix_create_disk",
        "test-test_matrix_create_slow",
        "test-test_matrix_health_slow",
    ]
    assert all(t in ids for t in targets)
    excluded = page.by_class("excluded")
    assert [a.get("title") for t, a in excluded if t == "td"] == ["excluded from the matrix"]
    # The failed cells are listed below the grid with their reasons, linked too.
    assert "create × slow" in page.text and "expect_503" in page.text


def test_violation_shows_the_violating_event_and_the_events_before_it() -> None:
    page = Page(html.render(_run()))
    violating = page.by_class("violating")
    assert violating and violating[0][0] == "tr"
    assert "the violating event (#4, highlighted)" in page.text
    assert "decision=deny(EIO)" in page.text


def test_details_blocks_are_rendered() -> None:
    text = Page(html.render(_run())).text
    for expected in (
        "Assertion (assert_eq)", "418", "#2 stdout api line=x", "Printed", "Other details",
        "fsync, fdatasync", "FAULT_NOT_FIRED", "Replay", "var env",
    ):  # fmt: skip
        assert expected in text, expected


def test_large_trace_keeps_anchors_and_says_how_many_were_dropped() -> None:
    events = [_event(i, "syscall", "db", syscall="read", decision="allow") for i in range(1, 5001)]
    events[2499] = _event(2500, "syscall", "db", syscall="fsync", decision="deny(EIO)")
    events[1999] = _event(2000, "step_send", "api", path="/x")
    violation = Violation("m", "bad", 4000, events[3999].to_dict())
    test = TestResult("test_big", Outcome.FAILED, reason="bad", events=events, violation=violation)
    page = Page(html.render(RunResult("big.star", 1, 0.0, tests=[test])))
    data = page.data()
    embedded = data["tests"][0]
    seqs = [e["seq"] for e in embedded["events"]]
    expected = set(range(1, 1001)) | set(range(4001, 5001))
    for anchor in (2000, 2500, 4000):
        expected |= set(range(anchor - 25, anchor + 26))
    assert seqs == sorted(expected)
    assert embedded["events_dropped"] == 5000 - len(expected)
    assert embedded["event_count"] == 5000
    assert data["events_downsampled"] is True
    assert f"{embedded['events_dropped']} dropped" in page.text


def test_every_non_allow_syscall_is_kept_in_a_large_trace() -> None:
    events = [_event(i, "stdout", "api", line="x") for i in range(1, 3001)]
    denied = [1200, 1500, 1501, 2999]
    for seq in denied:
        events[seq - 1] = _event(seq, "syscall", "db", decision="deny(ENOSPC)")
    test = TestResult("test_big", Outcome.PASSED, events=events)
    data = Page(html.render(RunResult("big.star", 1, 0.0, tests=[test]))).data()
    seqs = {e["seq"] for e in data["tests"][0]["events"]}
    assert set(denied) <= seqs
    assert {1175, 1225, 1475, 1526} <= seqs and 1174 not in seqs and 1527 not in seqs


def test_a_trace_at_the_threshold_is_kept_whole() -> None:
    events = [_event(i) for i in range(1, 2001)]
    page = Page(html.render(RunResult("s.star", 1, 0.0, tests=[TestResult("test_x", Outcome.PASSED, events=events)])))
    entry = page.data()["tests"][0]
    assert len(entry["events"]) == 2000 and entry["events_dropped"] == 0
    assert "dropped" not in page.text


def test_non_finite_numbers_become_strings() -> None:
    ev = Event("stdout", "api", {"v": "nan"}, data={"v": float("nan"), "w": float("inf")}, ts=1.0)
    run = RunResult("s.star", 1, 0.0, tests=[TestResult("test_x", Outcome.PASSED, events=[ev])])
    data = Page(html.render(run)).data()
    assert data["tests"][0]["events"][0]["data"] == {"v": "nan", "w": "inf"}


def test_empty_run() -> None:
    page = Page(html.render(RunResult("empty.star", 3, 0.0)))
    assert "No tests ran." in page.text
    assert "matrix" not in page.ids()
    assert page.data()["tests"] == []


@pytest.mark.parametrize(
    ("tests", "interrupted", "pill"),
    [
        ([TestResult("test_a", Outcome.PASSED)], False, "✓ 1/1 passed"),
        ([TestResult("test_a", Outcome.INCONCLUSIVE)], False, "? 1 inconclusive"),
        ([TestResult("test_a", Outcome.PASSED)], True, "⊘ interrupted"),
    ],
)
def test_run_pill(tests: list[TestResult], interrupted: bool, pill: str) -> None:
    page = Page(html.render(RunResult("s.star", 1, 0.0, tests=tests, interrupted=interrupted)))
    assert pill in page.text


def test_page_is_self_contained() -> None:
    page_text = html.render(_run())
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page_text)
    assert "@import" not in page_text


def test_script_asset_cannot_end_its_element() -> None:
    # A "</" in the inlined script would end the <script> element early.
    assert "</" not in html._asset("report.js")


def test_write_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text("old")
    html.write(_run(), str(path))
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert os.listdir(tmp_path) == ["report.html"]
