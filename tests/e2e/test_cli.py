"""The command line, through the front door: exit codes, --test, --seed, output formats."""

from __future__ import annotations

import json
from pathlib import Path

from support import faultbox_cli, free_port, svc_decl

PASSING = """
def test_alpha():
    assert_eq(1 + 1, 2)

def test_beta():
    assert_true(True)

def check():
    return 1

scenario(check)
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.star"
    path.write_text(text)
    return path


def test_version() -> None:
    out = faultbox_cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("faultbox ")


def test_all_pass_exit_0_and_summary(tmp_path: Path) -> None:
    out = faultbox_cli("test", str(write(tmp_path, PASSING)), "--seed", "5")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "seed=5" in out.stdout
    assert out.stdout.rstrip().splitlines()[-1].startswith("3 passed, 0 failed")


def test_failure_exit_2_with_replay(tmp_path: Path) -> None:
    spec = write(tmp_path, 'def test_bad():\n    assert_eq(1, 2, "math")\n')
    out = faultbox_cli("test", str(spec), "--seed", "9")
    assert out.returncode == 2
    assert "assert_eq failed: 1 != 2 (math)" in out.stdout
    assert f"replay: faultbox test {spec} --test test_bad --seed 9" in out.stdout
    assert "0 passed, 1 failed" in out.stdout


def test_inconclusive_only_exit_3(tmp_path: Path) -> None:
    out = faultbox_cli("test", str(write(tmp_path, 'def test_slow():\n    sleep("5s")\n')), "--timeout", "200ms")
    assert out.returncode == 3, out.stdout


def test_load_error_exit_1_without_traceback(tmp_path: Path) -> None:
    out = faultbox_cli("test", str(write(tmp_path, "x = 1\ndef f():\n    return y\n")))
    assert out.returncode == 1
    assert f"{tmp_path}/spec.star:3:12: error [SPEC_UNDEFINED]: undefined name 'y'" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_missing_binary_is_a_load_error(tmp_path: Path) -> None:
    out = faultbox_cli("test", str(write(tmp_path, 'a = service("a", "./not-built-yet")\n')))
    assert out.returncode == 1
    assert "binary ./not-built-yet does not exist" in out.stderr and "spec.star:1" in out.stderr


def test_test_selection(tmp_path: Path) -> None:
    spec = str(write(tmp_path, PASSING))
    exact = faultbox_cli("test", spec, "--test", "alpha")
    assert exact.returncode == 0 and "1 passed" in exact.stdout and "test_alpha" in exact.stdout
    glob = faultbox_cli("test", spec, "--test", "test_*a")
    assert "2 passed" in glob.stdout  # alpha, beta
    none = faultbox_cli("test", spec, "--test", "gamma")
    assert none.returncode == 1
    assert 'no test matched "gamma"' in none.stderr
    assert "test_alpha" in none.stderr and "test_check" in none.stderr


def test_json_output_has_every_event(tmp_path: Path) -> None:
    port = free_port()
    spec = write(
        tmp_path,
        svc_decl("svc", port)
        .replace("@PYTHON@", "python3")
        .replace("@FIXTURES@", str(Path(__file__).resolve().parents[1] / "fixtures"))
        + """
def test_ping():
    assert_eq(svc.main.send(data = "PING"), "PONG")
""",
    )
    out = faultbox_cli("test", str(spec), "--format", "json", "--seed", "4", "--output", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc == json.loads((tmp_path / "r.json").read_text())
    assert doc["seed"] == 4 and doc["counts"]["pass"] == 1
    [test] = doc["tests"]
    types = [e["type"] for e in test["events"]]
    assert types[:3] == ["proxy_started", "service_started", "service_ready"], "the proxy is up before the service"
    assert "step_send" in types and "step_recv" in types
    # The step's connection closes through the proxy when the proxy sees it go, which may be after
    # the service stopped: only the proxy's own events can follow service_exited.
    assert [t for t in types if not t.startswith("proxy_")][-1] == "service_exited", types
    assert [e["seq"] for e in test["events"]] == list(range(1, len(types) + 1))
    assert test["replay"] == f"faultbox test {spec} --test test_ping --seed 4"
    assert "1 passed" in out.stderr  # the console went to stderr


def test_check_lists_tests_and_filters(tmp_path: Path) -> None:
    spec = write(
        tmp_path, 'a = service("a", "/bin/cat")\ndef test_x():\n    fault(a, write = deny("EIO"), run = lambda: None)\n'
    )
    out = faultbox_cli("check", str(spec))
    assert out.returncode == 0
    assert "service a: intercepts pwrite64, pwritev, pwritev2, write, writev" in out.stdout
    assert "test_x" in out.stdout


def test_interrupt_while_loading_says_where_without_traceback(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from support import wait_until

    spec = tmp_path / "loop.star"
    spec.write_text(  # 10^14 additions (range() refuses more than 10^7 numbers at once): endless
        "def f():\n    n = 0\n    for i in range(10000000):\n        for j in range(10000000):\n"
        '            n += j\n    return n\n\nprint("looping")\nX = f()\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "faultbox", "test", str(spec)], stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the top level is about to enter its endless loop

    def cpu_ticks() -> int:  # the process's own CPU time (utime + stime): it grows only while it runs
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    # In the loop once it has run for 0.2 s of its own CPU time after the print (getting there takes
    # microseconds): a condition on the process, not a guess at how soon a loaded machine runs it.
    at_print = cpu_ticks()
    wait_until(lambda: cpu_ticks() - at_print >= os.sysconf("SC_CLK_TCK") // 5, "the spec's loop to run", 60)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=30)
    err = first + rest
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted while loading the spec (it was running" in err and "loop.star:5" in err, err


def test_a_spec_without_tests_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty.star").write_text("def helper():\n    return 1\n")
    out = faultbox_cli("test", str(tmp_path / "empty.star"))
    assert out.returncode == 1
    assert "error [NO_TESTS_DISCOVERED]:" in out.stderr and "empty.star defines no tests" in out.stderr
    assert "fix: write a function named test_" in out.stderr and "Traceback" not in out.stderr


def test_report_renders_a_saved_result_as_the_run_did(tmp_path: Path) -> None:
    port = free_port()
    declared = svc_decl("svc", port).replace("@PYTHON@", "python3")
    declared = declared.replace("@FIXTURES@", str(Path(__file__).resolve().parents[1] / "fixtures"))
    spec = write(
        tmp_path,
        declared
        + """
def ping():
    return svc.main.send(data = "PING")

def test_ok():
    assert_eq(ping(), "PONG")

def test_bad():
    assert_eq(ping(), "PANG")

slow = fault_assumption("slow", target = svc, write = delay("5ms"))
fault_matrix(scenarios = [ping], faults = [slow], default_expect = lambda r: assert_eq(r, "PONG"))
""",
    )
    run = faultbox_cli(
        "test", str(spec), "--seed", "7", "-o", str(tmp_path / "r.json"),
        "--html", str(tmp_path / "run.html"), "--junit", str(tmp_path / "run.xml"),
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    html, xml = str(tmp_path / "again.html"), str(tmp_path / "again.xml")
    again = faultbox_cli("report", str(tmp_path / "r.json"), "--html", html, "--junit", xml)
    assert again.returncode == 0, again.stderr
    assert again.stdout == run.stdout  # the same console report, failure details and matrix included
    assert "test_bad" in again.stdout and "PANG" in again.stdout
    assert (tmp_path / "again.html").read_bytes() == (tmp_path / "run.html").read_bytes()
    assert (tmp_path / "again.xml").read_bytes() == (tmp_path / "run.xml").read_bytes()


def test_report_refuses_what_is_not_a_result(tmp_path: Path) -> None:
    (tmp_path / "text.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    (tmp_path / "future.json").write_text('{"schema": 99, "tests": []}')
    for name, expected in (
        ("missing.json", "No such file"),
        ("text.json", "text.json:1:2: not JSON"),
        ("other.json", "not a faultbox result"),
        ("future.json", "result schema 99"),
    ):
        out = faultbox_cli("report", str(tmp_path / name))
        assert out.returncode == 1 and expected in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_a_runner_that_dies_leaves_the_tests_it_finished(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    spec = write(tmp_path, 'def test_a_quick():\n    assert_true(True)\n\ndef test_b_long():\n    sleep("60s")\n')
    out = tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "faultbox", "test", str(spec), "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def finished() -> int:  # the file exists from the run's start; wait for the first test in it
        try:
            return len(json.loads(out.read_text())["tests"])
        except (OSError, ValueError):
            return 0

    deadline = time.monotonic() + 30
    while not finished() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no chance to write anything at exit
    proc.wait(timeout=30)
    data = json.loads(out.read_text())
    assert [t["name"] for t in data["tests"]] == ["test_a_quick"]
    assert data["interrupted"] is True and data["tests"][0]["outcome"] == "passed"
    shown = faultbox_cli("report", str(out))
    assert shown.returncode == 0 and "interrupted" in shown.stdout, shown.stdout + shown.stderr


def test_an_unknown_kafka_error_code_is_refused_before_any_test_runs(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text(
        'bus = service("bus", "/bin/cat", interface("main", "kafka", 5799))\n'
        "\n"
        'flaky = fault_assumption("flaky", target = bus.main, rules = [error(topic = "orders", code = "NOT_A_CODE")])\n'
        "def test_x():\n    pass\n"
    )
    r = faultbox_cli("test", str(spec))
    assert r.returncode == 1, r.stderr
    assert "spec.star:3" in r.stderr and "'NOT_A_CODE' is not a Kafka error code" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert "test_x" not in r.stdout


def test_usage_mistakes_exit_1_and_version_is_a_command(tmp_path: Path) -> None:
    bad = faultbox_cli("test", "--jobs", "0", str(write(tmp_path, PASSING)))
    assert bad.returncode == 1 and "--jobs" in bad.stderr, bad.stderr  # 2 would read as "a test failed"
    unknown = faultbox_cli("test", "--no-such-flag")
    assert unknown.returncode == 1 and "unrecognized arguments" in unknown.stderr
    version = faultbox_cli("version")
    assert version.returncode == 0 and version.stdout.startswith("faultbox ")
    bare = faultbox_cli()
    assert bare.returncode == 0 and "usage:" in bare.stderr


def test_without_a_spec_the_directory_s_faultbox_star_runs(tmp_path: Path) -> None:
    none = faultbox_cli("test", cwd=tmp_path)
    assert none.returncode == 1 and "faultbox.star" in none.stderr and "Traceback" not in none.stderr
    (tmp_path / "faultbox.star").write_text(PASSING)
    out = faultbox_cli("test", cwd=tmp_path)
    assert out.returncode == 0 and "faultbox faultbox.star" in out.stdout and "3 passed" in out.stdout


def test_test_by_regular_expression(tmp_path: Path) -> None:
    spec = str(write(tmp_path, PASSING))
    out = faultbox_cli("test", spec, "--test", "~(alpha|check)$")
    assert out.returncode == 0 and "2 passed" in out.stdout and "test_beta" not in out.stdout
    bad = faultbox_cli("test", spec, "--test", "~(unclosed")
    assert bad.returncode == 1 and "not a regular expression" in bad.stderr and "Traceback" not in bad.stderr


def test_check_as_json_with_findings(tmp_path: Path) -> None:
    spec = write(
        tmp_path, 'a = service("a", "/bin/cat")\ndef test_x():\n    fault(a, write = deny("EIO"), run = lambda: None)\n'
    )
    out = faultbox_cli("check", str(spec), "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is True and report["tests"] == ["test_x"] and report["findings"] == []
    assert report["schema_version"] == 1 and report["plan_instances"] == 1
    [svc] = report["services"]
    assert svc["name"] == "a" and svc["kind"] == "process" and "write" in svc["intercepts"]

    empty = faultbox_cli("check", str(write(tmp_path, "x = 1\n")), "--format", "json")
    assert empty.returncode == 1
    report = json.loads(empty.stdout)
    assert report["ok"] is False and report["tests"] == []
    assert [f["code"] for f in report["findings"]] == ["NO_TESTS_DISCOVERED"]

    broken = faultbox_cli("check", str(write(tmp_path, "def f(:\n")), "--format", "json")
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    report = json.loads(broken.stdout)
    assert report["ok"] is False and report["tests"] is None
    [finding] = report["findings"]
    assert finding["code"] == "SPEC_SYNTAX" and finding["location"].endswith("spec.star:1:7") and finding["suggestion"]
