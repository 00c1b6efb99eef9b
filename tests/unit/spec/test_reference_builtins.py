"""bytes, load_json and load_yaml as the reference defines them, and their errors (file:line, a fix)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from faultbox.errors import Code, SpecError
from faultbox.spec import load_spec


def _globals(tmp_path: Path, body: str) -> dict[str, Any]:
    spec = tmp_path / "spec.star"
    spec.write_text(body + "\ndef test_nothing():\n    pass\n")
    return dict(load_spec(str(spec)).root.globals)


def _error(tmp_path: Path, body: str) -> str:
    spec = tmp_path / "spec.star"
    spec.write_text(body + "\ndef test_nothing():\n    pass\n")
    with pytest.raises(SpecError) as caught:
        load_spec(str(spec))
    assert caught.value.code is Code.SPEC_BAD_ARGUMENT, caught.value.render()
    return caught.value.render()


def test_bytes_as_starlark_makes_them(tmp_path: Path) -> None:
    g = _globals(
        tmp_path,
        'a = bytes("héllo")\n'
        "b = bytes([104, 105])\n"
        'c = bytes(b"raw")\n'
        "d = type(a)\n"
        "e = len(a)\n"
        "f = str(bytes([104, 0xff]))\n"
        'g = repr(bytes("a\\"\\n\\x01"))\n'
        "h = b[0:1]\n"
        'i = bytes("ab") == b"ab"\n',
    )
    assert g["a"] == "héllo".encode() and g["b"] == b"hi" and g["c"] == b"raw"
    assert g["d"] == "bytes" and g["e"] == 6
    assert g["f"] == "h\ufffd", "str() of bytes is their UTF-8 text, U+FFFD for what is not"
    assert g["g"] == 'b"a\\"\\n\\x01"'
    assert g["h"] == b"h" and g["i"] is True


def test_bytes_refuses_what_is_not_bytes(tmp_path: Path) -> None:
    rendered = _error(tmp_path, "x = 1\ny = bytes(3)\n")
    assert "spec.star:2" in rendered and "cannot make bytes from a int" in rendered and "bytes([104, 105])" in rendered
    rendered = _error(tmp_path, "y = bytes([1, 300])\n")
    assert "spec.star:1" in rendered and "element 1 is 300" in rendered and "from 0 to 255" in rendered


def test_load_json_reads_beside_the_spec(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fixture.json").write_text('{"users": [{"id": 1.0, "score": 2.5, "n": 1e3}], "on": true}')
    g = _globals(tmp_path, 'cfg = load_json("data/fixture.json")\nfirst = cfg["users"][0]\nkind = type(first["id"])\n')
    assert g["first"] == {"id": 1, "score": 2.5, "n": 1000}
    assert g["kind"] == "int", "integral numbers become ints"
    assert g["cfg"]["on"] is True


def test_load_json_errors_name_the_file_and_place(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"a": 1,\n "b": }')
    rendered = _error(tmp_path, 'x = load_json("bad.json")\n')
    assert "spec.star:1" in rendered and "bad.json is not JSON at line 2, column 7" in rendered
    rendered = _error(tmp_path, 'x = load_json("missing.json")\n')
    assert "cannot read" in rendered and "missing.json" in rendered and "relative to the directory" in rendered


def test_load_yaml_reads_beside_the_spec(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text(
        "name: shop\nreplicas: 3\nwhen: 2024-05-01\nports:\n  - 80\n  - 443\nratio: 0.5\n"
    )
    g = _globals(tmp_path, 'cfg = load_yaml("cfg.yaml")\n')
    assert g["cfg"] == {"name": "shop", "replicas": 3, "when": "2024-05-01", "ports": [80, 443], "ratio": 0.5}


def test_load_yaml_refuses_keys_that_are_not_strings(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text("routes:\n  200: ok\n")
    rendered = _error(tmp_path, 'cfg = load_yaml("cfg.yaml")\n')
    assert "spec.star:1" in rendered and "the map at routes has the key 200, not a string" in rendered
    assert 'quote the key ("200": ...)' in rendered
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    rendered = _error(tmp_path, 'cfg = load_yaml("broken.yaml")\n')
    assert "broken.yaml is not YAML at line 2" in rendered
