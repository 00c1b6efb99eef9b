"""Failure bundles through the command line, with real services: a failed test leaves a bundle,
inspect reads it, replay runs it again and says whether the failure reproduced (and stops
reproducing once the program under test is fixed), report renders it."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import FIXTURES, faultbox_cli, free_port, svc_decl

# A line server whose answer is in its source: "fixing" it is editing this file.
APP = """
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen()
while True:
    conn, _ = s.accept()
    f = conn.makefile("rwb")
    for line in f:
        f.write(b"ANSWER\\n")
        f.flush()
    conn.close()
"""

SPEC = """
want = load_json("data/want.json")["reply"]
app = service("app", "python3", interface("main", "tcp", {port}), args = ["app.py"], env = {{"PORT": "{port}"}},
              healthcheck = tcp("127.0.0.1:{port}"))

def test_ping():
    assert_eq(app.main.send(data = "PING"), want)

def test_steady():
    assert_true(True)
"""


@pytest.fixture
def project() -> Iterator[Path]:
    """A spec directory outside /tmp, which test workers (--jobs) see too: each has a /tmp of its own."""
    path = Path(tempfile.mkdtemp(prefix="faultbox-bundles-", dir="/var/tmp"))
    (path / "app.py").write_text(APP.replace("ANSWER", "PANG"))
    (path / "data").mkdir()
    (path / "data" / "want.json").write_text('{"reply": "PONG"}\n')
    (path / "spec.star").write_text(SPEC.format(port=free_port()))
    yield path
    shutil.rmtree(path)


def test_a_failure_leaves_a_bundle_that_replays(project: Path, tmp_path: Path) -> None:
    spec = project / "spec.star"
    run = faultbox_cli("test", str(spec), "--seed", "7", "-o", str(tmp_path / "r.json"))
    assert run.returncode == 2, run.stdout + run.stderr
    bundle = project / ".faultbox" / "bundles" / "test_ping-7.fb"
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["test_ping-7.fb"]  # the passing test has none
    assert f"    bundle: {bundle}  (faultbox replay {bundle})" in run.stdout
    doc = json.loads((tmp_path / "r.json").read_text())
    ping, steady = doc["tests"]
    assert ping["bundle"] == str(bundle) and "bundle" not in steady
    with zipfile.ZipFile(bundle) as zf:
        assert sorted(n for n in zf.namelist() if n.startswith("spec/")) == ["spec/data/want.json", "spec/spec.star"]

    shown = faultbox_cli("inspect", str(bundle))
    assert shown.returncode == 0, shown.stderr
    for line in (
        "test:        test_ping",
        "verdict:     fail (failed)",
        'reason:      assert_eq failed: "PANG" != "PONG"',
        f"at:          {spec}:7",
        "seed:        7",
        "  data/want.json  (18 bytes)",
        f"spec:        spec.star (from {project})",
    ):
        assert line in shown.stdout, shown.stdout
    assert re.search(r"step_recv app .*reply=PANG", shown.stdout), shown.stdout

    again = faultbox_cli("replay", str(bundle), "--html", str(tmp_path / "replay.html"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert '  recorded: FAIL (failed): assert_eq failed: "PANG" != "PONG"' in again.stdout
    assert '  replayed: FAIL (failed): assert_eq failed: "PANG" != "PONG"' in again.stdout
    assert "reproduced: the replay ended fail for the same reason" in again.stdout
    assert "test_ping" in (tmp_path / "replay.html").read_text()

    html = tmp_path / "bundle.html"
    rendered = faultbox_cli("report", str(bundle), "--html", str(html), "--junit", str(tmp_path / "j.xml"))
    assert rendered.returncode == 0, rendered.stderr
    assert "FAIL test_ping" in rendered.stdout and f"bundle: {bundle}" in rendered.stdout
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") or page.lstrip().lower().startswith("<!doctype html>")
    assert "test_ping" in page and "PANG" in page
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=\"?https?:", page)  # nothing fetched: self-contained
    assert "<failure" in (tmp_path / "j.xml").read_text()

    # The program is fixed after the fact: the bundle's failure no longer happens.
    (project / "app.py").write_text(APP.replace("ANSWER", "PONG"))
    fixed = faultbox_cli("replay", str(bundle))
    assert fixed.returncode == 1, fixed.stdout + fixed.stderr
    assert "  replayed: PASS (passed)" in fixed.stdout
    assert "did not reproduce: the recorded run ended fail, the replay pass" in fixed.stdout
    assert "the normalized traces differ:" in fixed.stdout
    assert re.search(r"-\s+2\s+step_recv .*reply=PANG", fixed.stdout) and re.search(
        r"\+\s+2\s+step_recv .*reply=PONG", fixed.stdout
    ), fixed.stdout


def test_where_bundles_go(project: Path, tmp_path: Path) -> None:
    spec = project / "spec.star"
    off = faultbox_cli("test", str(spec), "--seed", "3", "--no-bundles")
    assert off.returncode == 2 and "bundle:" not in off.stdout
    assert not (project / ".faultbox" / "bundles").exists()
    elsewhere = tmp_path / "kept"
    jobs = faultbox_cli(
        "test", str(spec), "--seed", "3", "--jobs", "2", "--bundle-dir", str(elsewhere), "--log-format", "json"
    )
    assert jobs.returncode == 2, jobs.stdout + jobs.stderr
    assert [p.name for p in elsewhere.iterdir()] == ["test_ping-3.fb"]  # from a test worker
    finished = {e["test"]: e for e in map(json.loads, jobs.stdout.splitlines()) if e.get("msg") == "test finished"}
    assert finished["test_ping"]["bundle"] == str(elsewhere / "test_ping-3.fb"), jobs.stdout
    assert "bundle" not in finished["test_steady"]


FLAKY = """
def test_flaky():
    r = fault(svc, fsync = deny("EIO", probability = 0.5),
              run = lambda: svc.main.send(data = "WRITE @DATA@ 4"))
    assert_eq(r, "ok=4 err=0 errnos=")
"""


def test_replay_uses_the_failing_runs_seed(tmp_path: Path) -> None:
    """--runs finds a failing seed among others; its bundle carries that seed, and replaying it
    draws the same fault decisions (a seed that passes would not reproduce)."""
    decl = svc_decl("svc", free_port()).replace("@PYTHON@", "python3").replace("@FIXTURES@", str(FIXTURES))
    spec = tmp_path / "spec.star"
    spec.write_text(decl + FLAKY.replace("@DATA@", str(tmp_path / "data")))
    run = faultbox_cli("test", str(spec), "--seed", "11", "--runs", "10", "--format", "json")
    assert run.returncode == 2, run.stdout + run.stderr
    [test] = json.loads(run.stdout)["tests"]
    assert test["outcome"] == "failed"
    bundle = Path(test["bundle"])
    assert bundle.name == f"test_flaky-{test['seed']}.fb" and bundle.exists()
    again = faultbox_cli("replay", str(bundle))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"seed {test['seed']}" in again.stdout and "reproduced:" in again.stdout
    assert "the normalized traces are the same" in again.stdout


@pytest.mark.slow
def test_a_failing_schedule_is_bundled_and_replays_exactly(tmp_path: Path) -> None:
    """The counter example's lost update: exploring finds it in a leaf, the leaf's bundle holds the
    order of releases that run realised, and replaying the bundle forces that order and fails the
    same way."""
    counter = Path(__file__).resolve().parents[2] / "examples" / "counter" / "counter.star"
    bundles = tmp_path / "bundles"
    out = faultbox_cli(
        "test", str(counter), "--test", "test_both_likes_count", "--seed", "1", "--no-shrink",
        "--bundle-dir", str(bundles), "-o", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert "a like was lost" in out.stdout and "failing leaves:" in out.stdout
    test = json.loads((tmp_path / "r.json").read_text())["tests"][0]
    assert re.fullmatch(r"order\.counter\.star:\d+=replay:(web|mobile)(/(web|mobile))+", test["decisions"])
    [bundle] = bundles.glob("*.fb")
    shown = faultbox_cli("inspect", str(bundle))
    assert test["decisions"] in shown.stdout, shown.stdout
    replay = faultbox_cli("replay", str(bundle))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "reproduced" in replay.stdout and "not reproduced" not in replay.stdout
