"""pytest --faultbox: specs collected as items (tests and matrix cells), run on real services, with
faultbox's own report for a failure, JUnit properties, pytest's selection options, and xdist
workers that each have their own loopback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from support import FIXTURES, free_port

SPEC = """
svc = service("svc", "{python}", interface("main", "tcp", {port}), args = ["{fixtures}/svc.py"],
    env = {{"PORT": "{port}"}}, healthcheck = tcp("127.0.0.1:{port}"))

def test_passes():
    assert_eq(svc.main.send(data = "ping").strip() != "", True)

def test_fails():
    assert_eq(var("WANT", default = "1"), "2")

def test_halts():
    halt("the premise did not hold")

def create():
    svc.main.send(data = "ping")

fault_matrix(
    scenarios = [create],
    faults = [fault_assumption("slow", target = svc, write = delay("1ms"))],
    default_expect = lambda r: None,
)
"""


def _pytest(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """pytest in a fresh process, as a user runs it: the plugin comes from the installed entry point."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "specs").mkdir()
    spec = SPEC.format(python=sys.executable, fixtures=FIXTURES, port=free_port())
    (tmp_path / "specs" / "shop.star").write_text(spec)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # the project's root: node ids from here
    return tmp_path


def test_items_are_tests_and_matrix_cells_with_readable_ids(project: Path) -> None:
    out = _pytest(project, "--faultbox", "--collect-only", "-q", "specs")
    assert out.returncode == 0, out.stdout + out.stderr
    ids = [line for line in out.stdout.splitlines() if "::" in line]
    assert ids == [
        "specs/shop.star::test_fails",
        "specs/shop.star::test_halts",
        "specs/shop.star::test_matrix_create_slow",
        "specs/shop.star::test_passes",
    ]


def test_star_files_are_left_alone_without_the_option(project: Path) -> None:
    out = _pytest(project, "--collect-only", "-q", "specs")
    assert "shop.star" not in out.stdout
    assert out.returncode == 5  # pytest's "no tests collected"


def test_a_run_reports_faultbox_verdicts_and_junit_properties(project: Path) -> None:
    junit = project / "j.xml"
    out = _pytest(project, "--faultbox", "specs", "--faultbox-seed", "77", f"--junitxml={junit}", "-rA")
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "2 passed, 1 skipped" in text and "1 failed" in text
    # The failure is faultbox's report of the test, not a Python traceback.
    assert 'FAILED specs/shop.star::test_fails - failed: assert_eq failed: "1" != "2"' in text
    assert "replay: faultbox test specs/shop.star --test test_fails --seed 77" in text
    assert "Traceback" not in text and "pytest_plugin.py" not in text.split("short test summary")[0]
    assert "faultbox: seed 77" in text
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    props = {name: {p.get("name"): p.get("value") for p in c.iter("property")} for name, c in cases.items()}
    assert props["test_fails"]["faultbox.outcome"] == "failed"
    assert props["test_fails"]["faultbox.seed"] == "77"
    assert props["test_halts"]["faultbox.outcome"] == "halted"
    cell = props["test_matrix_create_slow"]
    assert cell["faultbox.cell"] == "create × slow"
    assert re.fullmatch(r"svc\.write=delay\(1ms\) fired \d+/\d+", cell["faultbox.faults"]), cell
    assert cases["test_fails"].find("failure") is not None


def test_selection_and_variables_pass_through(project: Path) -> None:
    out = _pytest(project, "--faultbox", "specs", "-k", "fails", "--faultbox-var", "WANT=2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 3 deselected" in out.stdout
    out = _pytest(project, "--faultbox", "specs", "-x", "-q")  # stops at the first failure: test_fails
    assert out.returncode == 1
    assert "1 failed" in out.stdout and "passed" not in out.stdout.splitlines()[-1]


def test_last_failed_reruns_only_the_failed_items(project: Path) -> None:
    first = _pytest(project, "-p", "cacheprovider", "--faultbox", "specs", "-q")
    assert first.returncode == 1
    again = _pytest(project, "-p", "cacheprovider", "--faultbox", "specs", "--lf", "-q")
    assert again.returncode == 1
    assert "1 failed" in again.stdout and "passed" not in again.stdout.splitlines()[-1]


def test_a_spec_that_does_not_load_is_a_collection_error_with_its_line(project: Path) -> None:
    (project / "specs" / "broken.star").write_text('db = service("db", "/bin/true")\nx = undefined_name\n')
    out = _pytest(project, "--faultbox", "specs", "--collect-only", "-q")
    text = out.stdout + out.stderr
    assert out.returncode == 2, text  # pytest's "interrupted: errors during collection"
    assert "broken.star:2" in text and "[SPEC_UNDEFINED]" in text and "fix:" in text
    assert "Traceback" not in text


def test_xdist_workers_each_have_their_own_loopback_and_tmp(tmp_path: Path, marks: Path) -> None:
    """Each test's service listens only when both have started, on the same port, after writing the
    same /tmp file: both pass only in two isolated workers at once."""
    port = free_port()
    fixed = "/tmp/faultbox-xdist-test.wal"
    env = f'{{"MARKS": "{marks}", "PEERS": "2", "FIXED": "{fixed}", "WAIT": "90", "PORT": "{port}"}}'
    tests = "".join(f'\ndef test_{n}():\n    assert_eq(s.main.send(data = "n").strip(), "1")\n' for n in "ab")
    (tmp_path / "par.star").write_text(
        f's = service("s", "{sys.executable}", interface("main", "tcp", {port}), '
        f'args = ["{FIXTURES}/rendezvous.py"], env = {env}, healthcheck = tcp("127.0.0.1:{port}", timeout = "120s"))\n'
        + tests
    )
    out = _pytest(tmp_path, "--faultbox", "par.star", "-n", "2", "--faultbox-seed", "3")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout
    assert not Path(fixed).exists(), "a worker's /tmp writes stay in the worker"


def test_faultbox_itself_is_not_assertion_rewritten(project: Path) -> None:
    """pytest rewrites every module of a package that installs a plugin; faultbox's own modules
    have no test asserts, and rewriting them costs each session where bytecode is not kept."""
    (project / "loaders.py").write_text(
        "def pytest_collection_finish(session):\n"
        "    import faultbox.spec, faultbox.runner.run\n"
        "    kinds = {type(m.__loader__).__name__ for m in (faultbox.spec, faultbox.runner.run)}\n"
        "    open('loaders.txt', 'w').write(' '.join(sorted(kinds)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "loaders", "-p", "no:cacheprovider", "--faultbox", "--co", "specs"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
            "PYTHONPATH": os.pathsep.join(filter(None, (str(project), os.environ.get("PYTHONPATH")))),
        },
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (project / "loaders.txt").read_text() == "SourceFileLoader"
