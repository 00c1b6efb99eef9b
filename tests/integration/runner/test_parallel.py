"""faultbox test --jobs N: tests at once in workers with their own loopback and /tmp; a dead
worker costs its test only; Ctrl-C and SIGKILL leave nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support import FIXTURES, cmdline, descendants_alive, faultbox_cli, free_port, process_tree, wait_until

FIXED = "/tmp/faultbox-parallel-test.wal"  # the same path in every test: each worker has its own


def _service(marks: Path, *, peers: int, fixed: str = FIXED, wait: int = 60) -> str:
    port = free_port()  # one fixed port for every test: workers do not share a network
    return f"""
s = service("s", "{sys.executable}", interface("main", "tcp", {port}), args = ["{FIXTURES}/rendezvous.py"],
    env = {{"MARKS": "{marks}", "PEERS": "{peers}", "FIXED": "{fixed}", "WAIT": "{wait}", "PORT": "{port}"}},
    healthcheck = tcp("127.0.0.1:{port}", timeout = "90s"))
"""


def _spec(tmp_path: Path, marks: Path, names: list[str], *, peers: int) -> Path:
    tests = "".join(f'\ndef test_{n}():\n    assert_eq(s.main.send(data = "n").strip(), "1")\n' for n in names)
    spec = tmp_path / "spec.star"
    spec.write_text(_service(marks, peers=peers) + tests)
    return spec


def test_tests_run_at_once_on_one_port_and_one_tmp_path(tmp_path: Path, marks: Path) -> None:
    """Each test's service listens only when both have started, on the same port, after writing the
    same /tmp file: only two isolated workers at once let both pass."""
    spec = _spec(tmp_path, marks, ["a", "b"], peers=2)
    out = tmp_path / "r.json"
    proc = faultbox_cli("test", str(spec), "--jobs", "2", "--seed", "5", "--output", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert [t["name"] for t in data["tests"]] == ["test_a", "test_b"]
    assert not Path(FIXED).exists(), "a worker's /tmp writes stay in the worker"
    assert "2 passed" in proc.stdout


def test_results_do_not_depend_on_the_number_of_workers(tmp_path: Path, marks: Path) -> None:
    spec = tmp_path / "spec.star"
    tests = "".join(
        f"""
def test_{n}():
    {'fail("planted")' if n in "bd" else 'assert_eq(s.main.send(data = "n").strip() != "", True)'}
"""
        for n in "abcd"
    )
    spec.write_text(_service(marks, peers=0, fixed="/tmp/faultbox-parallel-x.wal") + tests)
    outcomes = {}
    for jobs in ("1", "3"):
        out = tmp_path / f"r{jobs}.json"
        proc = faultbox_cli("test", str(spec), "--jobs", jobs, "--seed", "9", "--output", str(out))
        assert proc.returncode == 2, proc.stdout + proc.stderr
        tests_out = json.loads(out.read_text())["tests"]
        outcomes[jobs] = [(t["name"], t["outcome"], t["reason"], t["seed"], t["replay"]) for t in tests_out]
        Path("/tmp/faultbox-parallel-x.wal").unlink(missing_ok=True)  # written by the serial run
    assert outcomes["1"] == outcomes["3"]
    assert [o[1] for o in outcomes["3"]] == ["passed", "failed", "passed", "failed"]


def _workers(runner: int) -> list[int]:
    return [p for p in process_tree(runner) if "faultbox.runner.worker" in cmdline(p)]


def _cgroups(pids: list[int]) -> list[Path]:
    root = Path("/sys/fs/cgroup")
    return [p for pid in pids for p in root.rglob(f"faultbox-{pid}")]


def _start(spec: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "faultbox", "test", str(spec), "--jobs", "2", "--seed", "1", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _both_waiting(marks: Path, runner: subprocess.Popen[str]) -> list[int]:
    """Both tests' services started (both marks written); the whole process tree then."""
    wait_until(lambda: len(list(marks.glob("start-*"))) == 2 or runner.poll() is not None, "both tests started", 60)
    assert runner.poll() is None, runner.communicate()[0]
    return process_tree(runner.pid)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_stopping_the_runner_leaves_nothing_behind(tmp_path: Path, marks: Path, how: str) -> None:
    """Three peers are awaited, two tests run: the services wait until the runner is stopped."""
    spec = _spec(tmp_path, marks, ["a", "b"], peers=3)
    runner = _start(spec)
    try:
        tree = _both_waiting(marks, runner)
        workers = _workers(runner.pid)
        assert len(workers) == 2
        if how == "SIGKILL":
            os.kill(runner.pid, signal.SIGKILL)
        else:  # Ctrl-C at a terminal: the whole foreground group
            os.killpg(runner.pid, signal.SIGINT)
        out, _ = runner.communicate(timeout=90)
        wait_until(lambda: not descendants_alive(tree), "every process of the run ended", 30)
        assert _cgroups(workers) == []
        if how == "SIGINT":
            assert runner.returncode == 2 and "interrupted" in out, out
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_a_dead_worker_errs_its_test_and_the_run_goes_on(tmp_path: Path, marks: Path) -> None:
    # test_after and test_more may share a worker (and its /tmp): they check only that they ran.
    spec = tmp_path / "spec.star"
    spec.write_text(
        _service(marks, peers=0, fixed="/tmp/faultbox-parallel-dead.wal")
        + """
def test_victim():
    s.main.send(data = "victim")
    sleep("600s")

def test_after():
    assert_eq(s.main.send(data = "n").strip() != "", True)

def test_more():
    assert_eq(s.main.send(data = "n").strip() != "", True)
"""
    )
    out = tmp_path / "r.json"
    runner = _start(spec, "--output", str(out))
    try:
        wait_until(lambda: list(marks.glob("victim-*")) or runner.poll() is not None, "the victim test is running", 60)
        assert runner.poll() is None, runner.communicate()[0]
        service = int(next(iter(marks.glob("victim-*"))).name.split("-")[1])
        victim = [w for w in _workers(runner.pid) if service in process_tree(w)]
        assert len(victim) == 1
        services = process_tree(victim[0])
        os.kill(victim[0], signal.SIGKILL)
        text, _ = runner.communicate(timeout=120)
        assert runner.returncode == 2, text
        tests = {t["name"]: t for t in json.loads(out.read_text())["tests"]}
        assert tests["test_victim"]["outcome"] == "errored"
        assert "killed by SIGKILL" in tests["test_victim"]["reason"]
        assert tests["test_after"]["outcome"] == tests["test_more"]["outcome"] == "passed"
        wait_until(lambda: not descendants_alive(services), "the dead worker's services were reaped", 30)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_a_user_without_namespaces_is_told_why() -> None:
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
    probe = "from faultbox.engine.isolation import check_available\ncheck_available()"
    proc = subprocess.run([*nobody, sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "IsolationError" in proc.stderr and "needs root, or CAP_SYS_ADMIN" in proc.stderr, proc.stderr


def test_shards_run_apart_and_merge_into_the_whole_run(tmp_path: Path, marks: Path) -> None:
    names = ["a", "b", "c", "d", "e"]
    spec = tmp_path / "spec.star"
    bodies = {n: 'fail("x")' if n == "c" else "pass" for n in names}
    spec.write_text("".join(f"def test_{n}():\n    {bodies[n]}\n\n" for n in names))
    whole = tmp_path / "whole.json"
    assert faultbox_cli("test", str(spec), "--seed", "4", "-o", str(whole)).returncode == 2
    parts = []
    for k in (1, 2, 3):
        part = tmp_path / f"part{k}.json"
        proc = faultbox_cli("test", str(spec), "--seed", "4", "--shard", f"{k}/3", "-o", str(part))
        assert proc.returncode in (0, 2), proc.stderr
        assert len(json.loads(part.read_text())["tests"]) <= 2
        parts.append(str(part))
    merged = tmp_path / "merged.json"
    proc = faultbox_cli("report", "merge", *parts, "-o", str(merged))
    assert proc.returncode == 2, proc.stderr

    def comparable(path: Path) -> list[tuple[str, str, int, str]]:
        return [(t["name"], t["outcome"], t["seed"], t["replay"]) for t in json.loads(path.read_text())["tests"]]

    assert comparable(merged) == comparable(whole)
    assert faultbox_cli("test", str(spec), "--shard", "1/3").returncode == 1  # no --seed: refused
