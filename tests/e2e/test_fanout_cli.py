"""Fan-out through the command line: the console names each failing leaf with its choices and a
replay command, --leaf runs that leaf alone, the reports carry the leaves, and a bad --leaf is a
usage error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from support import FIXTURES, faultbox_cli, free_port, svc_decl

CHOICES = """
def test_modes():
    mode = choose("mode", ["fast", "safe"])
    retries = choose("retries", [0, 1, 2])
    assert_true(not (mode == "safe" and retries == 0), "safe mode without retries")
"""


def spec_file(tmp_path: Path) -> Path:
    decl = svc_decl("svc", free_port()).replace("@PYTHON@", "python3").replace("@FIXTURES@", str(FIXTURES))
    path = tmp_path / "spec.star"
    path.write_text(decl + CHOICES)
    return path


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_failing_leaf_is_reported_and_replays_alone(tmp_path: Path, jobs: str) -> None:
    spec = spec_file(tmp_path)
    out = faultbox_cli(
        "test", str(spec), "--seed", "3", "--jobs", jobs, "-o", str(tmp_path / "r.json"),
        "--junit", str(tmp_path / "j.xml"), "--html", str(tmp_path / "h.html"),
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert "6/7 leaves passed" in out.stdout, out.stdout
    assert 'leaf 4 mode="safe", retries=0: failed' in out.stdout, out.stdout
    replay = re.search(r"replay: (faultbox test .*--leaf '([^']*)')", out.stdout)
    assert replay is not None, out.stdout
    assert replay.group(2) == "choose.mode=1;choose.retries=0"
    doc = json.loads((tmp_path / "r.json").read_text())
    test = doc["tests"][0]
    assert test["decisions"] == "choose.mode=1;choose.retries=0"
    assert [leaf["verdict"] for leaf in test["leaves"]] == ["pass", "pass", "pass", "pass", "fail", "pass", "pass"]
    assert "leaves: 1 of 7 did not pass" in (tmp_path / "j.xml").read_text()
    assert "Leaves (6 of 7 passed)" in (tmp_path / "h.html").read_text()

    alone = faultbox_cli("test", str(spec), "--seed", "3", "--leaf", replay.group(2))
    assert alone.returncode == 2, alone.stdout + alone.stderr
    assert "safe mode without retries" in alone.stdout and "leaves passed" not in alone.stdout
    other = faultbox_cli("test", str(spec), "--seed", "3", "--leaf", "choose.mode=1;choose.retries=2")
    assert other.returncode == 0, other.stdout + other.stderr


def test_a_bad_leaf_is_a_usage_error(tmp_path: Path) -> None:
    out = faultbox_cli("test", str(spec_file(tmp_path)), "--leaf", "mode=1")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "--leaf" in out.stderr and "not a decision" in out.stderr and "Traceback" not in out.stderr


def test_a_failed_test_with_two_faults_is_shrunk_unless_told_not_to(tmp_path: Path) -> None:
    data = tmp_path / "data"
    decl = svc_decl("svc", free_port()).replace("@PYTHON@", "python3").replace("@FIXTURES@", str(FIXTURES))
    spec = tmp_path / "two.star"
    spec.write_text(
        decl
        + f"""
def test_two():
    out = fault(svc, fsync = deny("EIO", path = "{data}"), close = deny("EIO", path = "{data}"),
                run = lambda: svc.main.send("RESULTS {data} 1"))
    assert_eq(out, "ok")
"""
    )
    out = faultbox_cli("test", str(spec), "--seed", "1")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "smallest failing case (1 runs to find): without svc:" in out.stdout, out.stdout
    replay = re.search(r"smallest failing case.*\n\s+replay: (faultbox test .*--leaf '(off\.svc:\w+=1)')", out.stdout)
    assert replay is not None, out.stdout
    again = faultbox_cli("test", str(spec), "--seed", "1", "--leaf", replay.group(2))
    assert again.returncode == 2 and "fault_off" not in again.stderr, again.stdout + again.stderr
    plain = faultbox_cli("test", str(spec), "--seed", "1", "--no-shrink")
    assert plain.returncode == 2 and "smallest failing case" not in plain.stdout, plain.stdout
