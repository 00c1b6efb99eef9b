"""Reproducing runs through the command line: --runs finds the failing seeds of a probabilistic
fault and each replays alone; --seed last; --normalize gives the same file for the same seed; diff
shows where two behaviours part."""

from __future__ import annotations

import json
import re
from pathlib import Path

from faultbox._util.seeds import run_seed
from support import FIXTURES, faultbox_cli, free_port, svc_decl

FLAKY = """
def test_flaky():
    r = fault(svc, fsync = deny("EIO", probability = 0.5),
              run = lambda: svc.main.send(data = "WRITE @DATA@ 1"))
    assert_eq(r, "ok=1 err=0 errnos=")

def test_steady():
    assert_eq(svc.main.send(data = "PING"), "PONG")
"""


def spec_file(tmp_path: Path, body: str, name: str = "spec.star") -> Path:
    decl = svc_decl("svc", free_port()).replace("@PYTHON@", "python3").replace("@FIXTURES@", str(FIXTURES))
    path = tmp_path / name
    path.write_text(decl + body.replace("@DATA@", str(tmp_path / "data")))
    return path


def test_runs_report_the_failing_seeds_and_each_replays_alone(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, FLAKY)
    out = faultbox_cli(
        "test", str(spec), "--seed", "5", "--runs", "3", "--runs-all", "-o", str(tmp_path / "r.json"),
        "--junit", str(tmp_path / "j.xml"), "--html", str(tmp_path / "h.html"),
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert "seed=5  runs=3" in out.stdout
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["runs"] == 3 and doc["runs_all"] is True
    flaky, steady = doc["tests"]
    assert [r["seed"] for r in flaky["runs"]] == [run_seed(5, i) for i in range(3)]
    failed = [r["seed"] for r in flaky["runs"] if r["outcome"] == "failed"]
    passed = [r["seed"] for r in flaky["runs"] if r["outcome"] == "passed"]
    assert failed and passed, flaky["runs"]  # seed 5 draws both ways (probability 0.5)
    assert flaky["outcome"] == "failed" and flaky["seed"] == failed[0]  # the worst run's result
    assert [r["outcome"] for r in steady["runs"]] == ["passed"] * 3 and steady["outcome"] == "passed"
    # every failing seed is printed with the command that replays it alone
    listed = ", ".join(f"{r['seed']} (run {r['run']})" for r in flaky["runs"] if r["seed"] in failed)
    assert f"test_flaky: {listed}" in out.stdout
    for seed in failed:
        assert f"replay: faultbox test {spec} --test test_flaky --seed {seed}" in out.stdout
    junit = (tmp_path / "j.xml").read_text()
    assert junit.count("<failure") == 1 and f"seed {failed[0]}" in junit
    assert "failing seeds" in (tmp_path / "h.html").read_text()

    for seed in failed:
        alone = faultbox_cli("test", str(spec), "--test", "flaky", "--seed", str(seed))
        assert alone.returncode == 2, alone.stdout
        assert 'assert_eq failed: "ok=0 err=1 errnos=EIO"' in alone.stdout
    alone = faultbox_cli("test", str(spec), "--test", "flaky", "--seed", str(passed[0]))
    assert alone.returncode == 0, alone.stdout

    # without --runs-all a test stops at its first failing run
    first = faultbox_cli("test", str(spec), "--test", "flaky", "--seed", "5", "--runs", "3", "--format", "json")
    [test] = json.loads(first.stdout)["tests"]
    stop = next(i for i, r in enumerate(flaky["runs"]) if r["outcome"] == "failed")
    assert [r["seed"] for r in test["runs"]] == [r["seed"] for r in flaky["runs"][: stop + 1]]


def test_seed_last(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, "def test_ok():\n    assert_true(True)\n")
    none = faultbox_cli("test", str(spec), "--seed", "last")
    assert none.returncode == 1
    assert "[NO_LAST_SEED]: --seed last: no seed recorded" in none.stderr
    first = faultbox_cli("test", str(spec))
    assert first.returncode == 0, first.stdout
    seed = re.search(r"seed=(\d+)", first.stdout)
    assert seed is not None
    assert (tmp_path / ".faultbox" / "last-seed").read_text() == f"{seed.group(1)}\n"
    again = faultbox_cli("test", str(spec), "--seed", "last")
    assert again.returncode == 0 and f"seed={seed.group(1)} " in again.stdout
    faultbox_cli("test", str(spec), "--seed", "77")
    assert "seed=77 " in faultbox_cli("test", str(spec), "--seed", "last").stdout
    bad = faultbox_cli("test", str(spec), "--seed", "lats")
    assert bad.returncode == 1 and "write a whole number, or last" in bad.stderr


def test_normalize_is_stable_and_diff_shows_the_first_divergence(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, FLAKY)
    a, b = tmp_path / "a.norm", tmp_path / "b.norm"
    for path in (a, b):
        out = faultbox_cli("test", str(spec), "--seed", "5", "--normalize", str(path))
        assert out.returncode == 0, out.stdout + out.stderr  # seed 5's first run passes
    assert a.read_bytes() == b.read_bytes()
    same = faultbox_cli("diff", str(a), str(b))
    assert same.returncode == 0, same.stdout
    assert same.stdout.rstrip().endswith("traces are the same: 2 tests, 2 same, 0 different")

    # the same tests, one of them doing something else: diff a normalized trace with a result
    changed = spec_file(tmp_path, FLAKY.replace('data = "PING"', 'data = "LOG hello"').replace(
        '"PONG"', '"ok"'), "changed.star")  # fmt: skip
    out = faultbox_cli("test", str(changed), "--seed", "5", "-o", str(tmp_path / "changed.json"))
    assert out.returncode == 0, out.stdout
    d = faultbox_cli("diff", str(a), str(tmp_path / "changed.json"))
    assert d.returncode == 2, d.stdout
    text = d.stdout
    assert "= test_flaky: same" in text and "≠ test_steady: different" in text
    assert "svc steps: first difference at event 1 (A has 2, B has 2)" in text
    assert "      -    1  step_send data=PING interface=main method=send protocol=tcp" in text
    assert "      +    1  step_send data=LOG hello interface=main method=send protocol=tcp" in text
    assert text.rstrip().endswith("traces differ: 2 tests, 1 same, 1 different")
    unusable = faultbox_cli("diff", str(a), str(spec))
    assert unusable.returncode == 1 and "[RESULTS_UNREADABLE]" in unusable.stderr
