"""faultbox plan: the spec's services, filters, tests and faults, and its static warnings; faultbox
check reports the same warnings without failing; test --dry-run and --log-format json."""

from __future__ import annotations

import json
from pathlib import Path

from support import EXAMPLES, faultbox_cli

SPEC = """
db = service("db", "/bin/sleep", interface("main", "tcp", 19101), args = ["60"])
slow = fault_assumption("slow", target = db, fsync = delay("5ms"))

def watch(e):
    pass

m = monitor(watch, type = "stdout", service = "db")

def create():
    db.main.send(data = "x")

fault_matrix(scenarios = [create], faults = [slow], monitors = [m], default_expect = lambda r: None)
"""


def test_plan_lists_filters_cells_and_warnings(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text(SPEC)
    out = faultbox_cli("plan", str(spec))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "intercepts fdatasync, fsync" in text
    assert "test_matrix_create_slow  cell create × slow" in text and "faults: db.fsync=delay(5ms)" in text
    assert 'warning [MONITOR_NEVER_MATCHES]: monitor "watch" watches type="stdout"' in text
    assert "spec.star:8" in text  # where the monitor was declared
    data = json.loads(faultbox_cli("plan", str(spec), "--format", "json").stdout)
    assert [t["name"] for t in data["tests"]] == ["test_matrix_create_slow"]
    assert data["services"][0]["intercepts"] == ["fdatasync", "fsync"]
    assert [f["code"] for f in data["findings"]] == ["MONITOR_NEVER_MATCHES"]


def test_check_reports_warnings_and_still_passes(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text(SPEC)
    text = faultbox_cli("check", str(spec))
    assert text.returncode == 0
    assert "warning [MONITOR_NEVER_MATCHES]" in text.stderr and "fix:" in text.stderr
    data = json.loads(faultbox_cli("check", str(spec), "--format", "json").stdout)
    assert data["ok"] is True
    assert data["findings"][0]["level"] == "warning" and data["findings"][0]["suggestion"]


def test_the_examples_plan_cleanly() -> None:
    for spec in ("shop/shop.star", "orders/orders.star", "orders/patterns.star"):
        data = json.loads(faultbox_cli("plan", str(EXAMPLES / spec), "--format", "json").stdout)
        assert data["findings"] == [], (spec, data["findings"])
        assert data["tests"]


def test_plan_of_a_spec_that_does_not_load(tmp_path: Path) -> None:
    spec = tmp_path / "bad.star"
    spec.write_text("x = undefined_name\n")
    out = faultbox_cli("plan", str(spec))
    assert out.returncode == 1
    assert "bad.star:1" in out.stderr and "[SPEC_UNDEFINED]" in out.stderr and "Traceback" not in out.stderr


def test_dry_run_starts_nothing_and_log_lines_are_json(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    marker = tmp_path / "started"
    spec.write_text(
        f'svc = service("svc", "/bin/sh", args = ["-c", "touch {marker}; sleep 60"])\n'
        "def test_ok():\n    assert_eq(1, 1)\n\ndef test_bad():\n    assert_eq(1, 2)\n"
    )
    dry = faultbox_cli("test", str(spec), "--dry-run")
    assert dry.returncode == 0 and not marker.exists()
    assert dry.stdout.splitlines() == [
        f"Dry-run: loaded {spec}",
        "Services: 1",
        "  - svc",
        "Tests: 2",
        "  - test_bad",
        "  - test_ok",
    ]
    run = faultbox_cli("test", str(spec), "--log-format=json", "--seed", "5")
    assert run.returncode == 2
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(r["msg"], r.get("test")) for r in lines] == [
        ("run started", None),
        ("test started", "test_bad"),
        ("test finished", "test_bad"),
        ("test started", "test_ok"),
        ("test finished", "test_ok"),
        ("run finished", None),
    ]
    bad = lines[2]
    assert bad["level"] == "error" and bad["outcome"] == "failed" and "assert_eq" in bad["reason"]
    assert bad["replay"].endswith("--test test_bad --seed 5")
    assert lines[4]["level"] == "info" and "replay" not in lines[4]
    assert lines[-1]["exit_code"] == 2 and lines[-1]["failed"] == 1


def test_docs_lists_and_prints_the_shipped_documents() -> None:
    listing = faultbox_cli("docs")
    assert listing.returncode == 0
    assert any(line.startswith("errors.md") for line in listing.stdout.splitlines())
    page = faultbox_cli("docs", "errors")
    assert page.returncode == 0 and page.stdout.startswith("# Error and warning codes")
    unknown = faultbox_cli("docs", "eror")
    assert unknown.returncode == 1 and 'did you mean "errors"' in unknown.stderr


DIFFERS = """
db = service("db", "/bin/sleep", interface("main", "tcp", 19103), args = ["60"], reuse = True)

def create():
    db.main.send(data = "x")

def test_charges():
    assert_eventually(type = "mock.POST /v1/charges")

fault_scenario("a", scenario = create, expect = lambda r: r.ok)
fault_scenario("b", scenario = create, expect = lambda r: None)
"""


def test_check_notes_differences_from_the_reference_once_each(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text(DIFFERS)
    text = faultbox_cli("check", str(spec))
    assert text.returncode == 0, text.stderr
    notes = [line for line in text.stderr.splitlines() if "[DIFFERS_FROM_REFERENCE]" in line]
    assert len(notes) == 3, text.stderr  # the expect functions, the mock filter, reuse: one line each
    assert notes[0].startswith(f"{spec}:10: info [DIFFERS_FROM_REFERENCE]: test_a: its expect= is a function")
    assert '  note: nothing to change if this is what you meant; see docs/decisions.md, "Verdicts:' in text.stderr
    data = json.loads(faultbox_cli("check", str(spec), "--format", "json").stdout)
    assert data["ok"] is True
    found = [f for f in data["findings"] if f["code"] == "DIFFERS_FROM_REFERENCE"]
    assert [f["level"] for f in found] == ["info"] * 3
    assert [f["location"].rsplit("/", 1)[-1] for f in found] == ["spec.star:10", "spec.star:8:30", "spec.star:2"]
    assert '"Events"' in found[1]["suggestion"] and "(1 more place alike)" in found[0]["message"]
    # faultbox plan's findings are what can never happen; the notes are check's alone
    plan = json.loads(faultbox_cli("plan", str(spec), "--format", "json").stdout)
    assert plan["findings"] == []
