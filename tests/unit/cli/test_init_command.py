"""`faultbox init` for a command: the spec it writes loads, and every mistake is a message with a
code and exit 1 (through main(), in-process)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from faultbox.cli.init import command_spec, default_name
from faultbox.cli.main import main
from faultbox.errors import UsageError
from faultbox.spec import load_spec


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["python3", "app.py", "--port", "1"], "app"),
        (["node", "server/index.js"], "index"),
        (["/usr/local/bin/my-server", "-v"], "my-server"),
        (["python3", "-m", "http.server"], "http_server"),
        (["./9lives"], "app_9lives"),
    ],
)
def test_default_name(argv: list[str], name: str) -> None:
    assert default_name(argv) == name


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "faultbox.star"
    path.write_text(text)
    return load_spec(str(path))


def test_http_spec_loads_with_test_and_fault(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    text = command_spec(
        [sys.executable, "app.py", "--flag"],
        name="api",
        port=8123,
        health="healthz",
        spec_dir=str(tmp_path),
        workdir=str(tmp_path),
    )
    spec = _load(tmp_path, text)
    assert [t.name for t in spec.tests] == ["test_api_answers", "test_api_answers_when_slow"]
    svc = spec.services["api"]
    assert svc.argv == (sys.executable, "app.py", "--flag") and svc.cwd == str(tmp_path)
    assert [(i.name, i.protocol, i.port) for i in svc.interfaces] == [("main", "http", 8123)]
    assert 'healthcheck = http("127.0.0.1:8123/healthz"),' in text
    assert 'r = api.main.get(path = "/healthz")' not in text and 'api.main.get(path = "/healthz")' in text
    assert "assert_eq(r.status, 200)" in text
    assert {"write", "sendto"} <= set(spec.syscalls["api"])
    assert "docs/spec-language.md" in text


def test_tcp_spec_and_a_spec_in_another_directory(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    text = command_spec(
        [sys.executable, "srv.py"],
        name="ledger",
        port=9555,
        protocol="tcp",
        spec_dir=str(tmp_path / "specs"),
        workdir=str(tmp_path),
    )
    assert 'healthcheck = tcp("127.0.0.1:9555"),' in text and 'cwd = "..",' in text
    spec = _load(tmp_path / "specs", text)
    assert spec.services["ledger"].cwd == str(tmp_path)
    assert 'ledger.main.send(data = "PING")' in text


def test_names_that_are_builtins_get_another_variable(tmp_path: Path) -> None:
    text = command_spec([sys.executable], name="http", spec_dir=str(tmp_path), workdir=str(tmp_path))
    assert 'http_svc = service("http",' in text
    _load(tmp_path, text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "9x"}, "--name '9x': a service name is letters"),
        ({"name": "test"}, "(not 'test')"),
        ({"port": 70000}, "--port 70000: a port is 1..65535"),
        ({"protocol": "tcp", "health": "/h"}, "--health is an HTTP path"),
    ],
)
def test_bad_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as err:
        command_spec([sys.executable], **kwargs)  # type: ignore[arg-type]
    assert message in err.value.message


def test_missing_command(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--", "no-such-command-here"]) == 1
    assert 'error [BAD_OPTION]: the command "no-such-command-here" is not on PATH' in capsys.readouterr().err
    assert main(["init", "--", "./missing.sh"]) == 1
    assert "the command ./missing.sh does not exist" in capsys.readouterr().err
    (tmp_path / "notexec.sh").write_text("")
    assert main(["init", "--", "./notexec.sh"]) == 1
    assert "is not executable" in capsys.readouterr().err
    assert main(["init"]) == 1
    assert "name the command that runs the service, after --" in capsys.readouterr().err
    assert not (tmp_path / "faultbox.star").exists()


def test_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "faultbox.star").write_text("# mine\n")
    assert main(["init", "--port", "8124", "--", sys.executable]) == 1
    err = capsys.readouterr().err
    assert "error [BAD_OPTION]: faultbox.star already exists; faultbox init does not overwrite a spec" in err
    assert "--output FILE" in err and "--force" in err
    assert (tmp_path / "faultbox.star").read_text() == "# mine\n"
    assert main(["init", "--port", "8124", "--force", "--", sys.executable]) == 0
    assert 'interface("main", "http", 8124)' in (tmp_path / "faultbox.star").read_text()
    assert main(["init", "-o", "-", "--", sys.executable]) == 0
    assert capsys.readouterr().out.startswith("# faultbox spec for ")


def test_conflicting_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--from-compose", "x.yml", "--port", "1"]) == 1
    assert "--port is for a command's spec" in capsys.readouterr().err
    assert main(["init", "--from-compose", "x.yml", "--", sys.executable]) == 1
    assert "and --from-compose: give one of the two" in capsys.readouterr().err
    assert main(["init", "--from-compose"]) == 1
    assert "no compose file here (looked for docker-compose.yml" in capsys.readouterr().err
    assert main(["init", "--from-compose", "x.yml"]) == 1
    assert "x.yml: no such file" in capsys.readouterr().err
    assert main(["init", "-o", "no/such/dir/s.star", "--", sys.executable]) == 1
    assert "the directory" in capsys.readouterr().err


def test_the_command_keeps_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    """Everything from the command on is the command's, with or without --: its --port is its own
    (and, without init's --port, the port the spec uses)."""
    assert main(["init", "-o", "-", sys.executable, "app.py", "--port", "1234", "--name", "x"]) == 0
    text = capsys.readouterr().out
    assert 'args = ["app.py", "--port", "1234", "--name", "x"],' in text
    assert 'interface("main", "http", 1234)' in text and 'app = service("app",' in text
    assert main(["init", "-o", "-", "--port", "99", "--", sys.executable, "--port=7"]) == 0
    assert 'interface("main", "http", 99)' in capsys.readouterr().out
    assert main(["init", "-o", "-", "--", sys.executable]) == 0
    assert "no --port: the spec assumes the service listens on 8080" in capsys.readouterr().err
