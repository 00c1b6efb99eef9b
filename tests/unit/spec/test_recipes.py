"""Every stdlib recipe builds a protocol fault its protocol accepts, and the CLI lists and shows them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from faultbox.cli.main import main
from faultbox.model.proxy import ProxyAction, ProxyRule
from faultbox.spec import load_spec

RECIPES = Path(__file__).resolve().parents[3] / "src" / "faultbox" / "stdlib" / "recipes"
PORTS = {"http": 5701, "http2": 5702, "postgres": 5703, "redis": 5704, "kafka": 5705}


def _names(proto: str) -> list[str]:
    body = (RECIPES / f"{proto}.star").read_text().rsplit("struct(", 1)[1]
    return re.findall(r"^\s+(\w+) = _\w+,$", body, re.MULTILINE)


@pytest.mark.parametrize("proto", sorted(PORTS))
def test_every_recipe_applies_to_its_protocol(tmp_path: Path, proto: str) -> None:
    names = _names(proto)
    assert len(names) >= 8
    calls = ", ".join(f"{proto}.{n}()" for n in names)
    spec = tmp_path / "spec.star"
    spec.write_text(
        f'load("@faultbox/recipes/{proto}.star", "{proto}")\n'
        f's = service("s", "/bin/cat", interface("main", "{proto}", {PORTS[proto]}))\n'
        f'fa = fault_assumption("all", target = s.main, rules = [{calls}])\n'
        "def test_x():\n    pass\n"
    )
    loaded = load_spec(str(spec))
    rules = loaded.assumptions["all"].rules
    assert len(rules) == len(names)
    assert all(isinstance(r, ProxyRule) and r.protocol == proto for r in rules)
    actions = {r.fault.action for r in rules if isinstance(r, ProxyRule)}
    assert ProxyAction.ERROR in actions or ProxyAction.RESPOND in actions


def test_recipe_details(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text(
        'load("@faultbox/recipes/http.star", "http")\n'
        'load("@faultbox/recipes/redis.star", "redis")\n'
        'api = service("api", "/bin/cat", interface("main", "http", 5711))\n'
        'cache = service("cache", "/bin/cat", interface("main", "redis", 5712))\n'
        'a = fault_assumption("a", target = api.main, rules = [http.gateway_timeout(path = "/pay", after = "2s")])\n'
        'b = fault_assumption("b", target = cache.main, rules = [redis.cache_miss(key = "user:*")])\n'
        "def test_x():\n    pass\n"
    )
    loaded = load_spec(str(spec))
    (a,) = loaded.assumptions["a"].rules
    (b,) = loaded.assumptions["b"].rules
    assert isinstance(a, ProxyRule) and isinstance(b, ProxyRule)
    assert (a.fault.status, a.fault.delay, a.fault.matcher("path")) == (504, 2.0, "/pay")
    assert a.describe() == "error(path=/pay, status=504, message=gateway timeout, delay=2s)"
    assert b.fault.nil and b.fault.action is ProxyAction.RESPOND
    assert b.fault.matchers == (("command", "GET"), ("key", "user:*"))


def test_cli_lists_and_shows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes", "list"]) == 0
    out = capsys.readouterr().out
    assert "postgres" in out and "serialization_failure" in out
    assert main(["recipes", "show", "redis"]) == 0
    assert "READONLY" in capsys.readouterr().out
    assert main(["recipes", "show", "mqtt"]) == 1
    assert "no recipes for 'mqtt'" in capsys.readouterr().err
