"""JUnit XML: counts, one testcase per test, failure bodies a CI page can act on, hostile text."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

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
from faultbox.report import junit

HOSTILE = "</script><img src=x onerror=alert(1)> \"q\" 'a' & ünïcødé ✓"


def _event(seq: int, type: str, service: str, **fields: str) -> Event:
    ev = Event(type, service, fields, ts=1000.0 + seq / 1000)
    ev.seq = seq
    return ev


def _violation() -> Violation:
    before = [_event(4, "step_send", "api", path="/orders").to_dict()]
    event = _event(5, "stdout", "api", status="confirmed", msg=HOSTILE).to_dict()
    return Violation("no_confirm", f"confirmed: {HOSTILE}", 5, event, before, "spec.star:12")


def _run() -> RunResult:
    tests = [
        TestResult("test_ok", Outcome.PASSED, duration_ms=1500, details={"printed": ["hello", HOSTILE]}),
        TestResult(
            "test_eq",
            Outcome.FAILED,
            reason="assert_eq failed: 201 != 418\nsecond line",
            duration_ms=20,
            location="orders.star:33",
            details={"expected": "418", "actual": 201, "nearest": ["#7 step_recv api status=201"]},
            replay="faultbox test orders.star --test test_eq --seed 7",
        ),
        TestResult("test_monitor", Outcome.FAILED, reason=f"monitor violated: {HOSTILE}", violation=_violation()),
        TestResult("test_matrix_a_b", Outcome.EXPECTATION_VIOLATED, reason="expect_success: status 503"),
        TestResult(
            "test_bypassed",
            Outcome.FAULT_BYPASSED,
            reason="require_faults_fire: no syscall was faulted by db.fsync=deny(EIO)",
            faults=[FaultRecord("db", "fsync", "deny(EIO)", ["fsync"], matched=0, fired=0)],
            diagnostics=[Diagnostic("warning", "FAULT_NOT_FIRED", "fsync never matched", "db")],
        ),
        TestResult("test_infra", Outcome.ERRORED, reason="[INFRA] seccomp unavailable"),
        TestResult("test_slow", Outcome.INCONCLUSIVE, reason="timed out: deadline 120s"),
        TestResult("test_halted", Outcome.HALTED, reason="halt(): stop here"),
    ]
    matrix = MatrixResult(
        ["a"],
        ["b", "c"],
        [
            MatrixCell("a", "b", "test_matrix_a_b", Outcome.EXPECTATION_VIOLATED),
            MatrixCell("a", "c", "test_matrix_a_c", None),
        ],
    )
    return RunResult("examples/orders/orders.star", 7, 1_700_000_000.0, 2345, tests, matrix, variables={"env": "ci"})


def _parse(result: RunResult) -> ET.Element:
    return ET.fromstring(junit.render(result).encode("utf-8"))


def _case(root: ET.Element, name: str) -> ET.Element:
    found = root.find(f".//testcase[@name='{name}']")
    assert found is not None, name
    return found


def test_suite_counts_and_attributes() -> None:
    root = _parse(_run())
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    for el in (root, suites[0]):
        assert el.get("tests") == "8"
        assert el.get("failures") == "4"  # failed ×2, expectation_violated, fault_bypassed
        assert el.get("errors") == "1"
        assert el.get("skipped") == "2"  # inconclusive, halted
        assert el.get("time") == "2.345"
    suite = suites[0]
    assert suite.get("name") == "examples/orders/orders.star"
    assert suite.get("timestamp") == "2023-11-14T22:13:20"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props == {"seed": "7", "interrupted": "false", "var.env": "ci"}


def test_one_testcase_per_test_with_classname_and_seconds() -> None:
    root = _parse(_run())
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == [t.name for t in _run().tests]
    assert {c.get("classname") for c in cases} == {"orders"}
    assert _case(root, "test_ok").get("time") == "1.500"
    assert _case(root, "test_eq").get("time") == "0.020"


@pytest.mark.parametrize(
    ("name", "tag", "type_"),
    [
        ("test_eq", "failure", "failed"),
        ("test_monitor", "failure", "failed"),
        ("test_matrix_a_b", "failure", "expectation_violated"),
        ("test_bypassed", "failure", "fault_bypassed"),
        ("test_infra", "error", "errored"),
        ("test_slow", "skipped", None),
        ("test_halted", "skipped", None),
    ],
)
def test_each_outcome_maps_to_its_element(name: str, tag: str, type_: str | None) -> None:
    case = _case(_parse(_run()), name)
    children = [c for c in case if c.tag != "system-out"]
    assert [c.tag for c in children] == [tag]
    assert children[0].get("type") == type_
    assert children[0].get("message")


def test_passed_test_has_no_problem_element() -> None:
    case = _case(_parse(_run()), "test_ok")
    assert [c.tag for c in case] == ["system-out"]


def test_failure_body_has_reason_location_expected_actual_nearest_and_replay() -> None:
    failure = _case(_parse(_run()), "test_eq").find("failure")
    assert failure is not None
    assert failure.get("message") == "assert_eq failed: 201 != 418"  # the headline only
    body = failure.text or ""
    assert "assert_eq failed: 201 != 418\nsecond line" in body
    assert "at: orders.star:33" in body
    assert "expected: 418" in body
    assert "actual: 201" in body
    assert "  #7 step_recv api status=201" in body
    assert "replay: faultbox test orders.star --test test_eq --seed 7" in body


def test_violation_body_has_the_violating_event_and_the_events_before_it() -> None:
    body = _case(_parse(_run()), "test_monitor").findtext("failure") or ""
    assert "monitor: no_confirm (spec.star:12)" in body
    assert "violating event: #5 stdout api status=confirmed" in body
    assert "events before it:\n  #4 step_send api path=/orders" in body


def test_fault_records_and_diagnostics_in_the_body() -> None:
    body = _case(_parse(_run()), "test_bypassed").findtext("failure") or ""
    assert "fault db.fsync=deny(EIO): matched 0, fired 0" in body
    assert "warning [FAULT_NOT_FIRED] fsync never matched" in body


def test_skipped_carries_the_reason() -> None:
    skipped = _case(_parse(_run()), "test_slow").find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "timed out: deadline 120s"


def test_printed_lines_go_to_system_out() -> None:
    assert _case(_parse(_run()), "test_ok").findtext("system-out") == f"hello\n{HOSTILE}"


def test_hostile_text_is_escaped_and_round_trips() -> None:
    text = junit.render(_run())
    assert "<img" not in text and "<script" not in text.replace("&lt;script", "")
    root = ET.fromstring(text.encode("utf-8"))
    failure = _case(root, "test_monitor").find("failure")
    assert failure is not None
    assert failure.get("message") == f"monitor violated: {HOSTILE}"
    assert f"msg={HOSTILE}" in (failure.text or "")


def test_characters_xml_cannot_carry_are_spelled_out() -> None:
    run = RunResult(
        "s.star",
        1,
        0.0,
        tests=[
            TestResult("test_ansi", Outcome.FAILED, reason="\x1b[31mred\x1b[0m \x00 \ud800 end"),
        ],
    )
    failure = _parse(run).find(".//failure")
    assert failure is not None
    assert failure.get("message") == "\\x1b[31mred\\x1b[0m \\x00 \\ud800 end"


def test_classname_of_a_dotted_spec_name_is_one_class() -> None:
    run = RunResult("specs/my.api.star", 1, 0.0, tests=[TestResult("test_x", Outcome.PASSED)])
    assert _case(_parse(run), "test_x").get("classname") == "my_api"


def test_empty_run() -> None:
    root = _parse(RunResult("empty.star", 3, 0.0))
    assert root.get("tests") == "0"
    assert root.findall(".//testcase") == []
    suite = root.find("testsuite")
    assert suite is not None and suite.get("failures") == "0" and suite.get("skipped") == "0"


def test_write_is_atomic_and_replaces_an_old_file(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text("old, half-written")
    junit.write(_run(), str(path))
    assert ET.parse(path).getroot().get("tests") == "8"
    assert os.listdir(tmp_path) == ["junit.xml"]
