"""mock_service() and the answer constructors refuse bad input when the spec loads, naming the line
and what to write instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from faultbox.errors import SpecError
from faultbox.model.mock import Dynamic, MockResponse
from faultbox.spec import load_spec


def _load(tmp_path: Path, body: str):  # type: ignore[no-untyped-def]
    spec = tmp_path / "spec.star"
    spec.write_text(body + "\ndef test_x():\n    pass\n")
    return load_spec(str(spec))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'mock_service("m", interface("main", "http", 0), routes = {"GET v1": status_only(200)})',
            'must start with "/"',
        ),
        ('mock_service("m", interface("main", "http", 0), routes = {"GET /a": {"x": 1}})', "not a mock response"),
        (
            'mock_service("m", interface("main", "http", 0), routes = {"GET /a": json_response(body = {"f": print})})',
            "body is not JSON",
        ),
        ('mock_service("m", interface("main", "http", 0), tls = True)', "tls=True is not supported"),
        ('mock_service("m", interface("main", "http", 0), config = {"a": 1})', "config= seeds Redis"),
        ('mock_service("m", interface("main", "redis", 0))', 'no mock for protocol "redis"'),
        ('mock_service("m")', "needs an interface"),
        (
            'mock_service("m", interface("a", "http", 0), interface("b", "http", 0), '
            'routes = {"GET /": status_only(200)})',
            "declare one mock_service per interface",
        ),
        ('mock_service("m", interface("main", "http", 0), overrides = {"x": status_only(200)})', "give openapi= too"),
        ('mock_service("m", interface("main", "http", 0), validate = "loud")', 'validate="loud"'),
        ('mock_service("m", interface("main", "http", 0), openapi = "missing.yaml")', "missing.yaml"),
        ("status_only(101)", "outside 200..599"),
        ('redirect("/x", status = 200)', "not a redirect status"),
        ("dynamic(lambda: 1)", "cannot be called with one argument"),
        ('json_response(headers = {"x": "a\\nb"})', "line break"),
    ],
)
def test_bad_mocks_are_refused_at_load(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, body)
    rendered = caught.value.render()
    assert message in rendered, rendered
    assert "spec.star:1" in rendered, rendered


def test_a_mock_service_is_data(tmp_path: Path) -> None:
    spec = _load(
        tmp_path,
        "def h(req):\n    return status_only(204)\n"
        'm = mock_service("m", interface("main", "http", 0), routes = {"POST /a": dynamic(h), '
        '"GET /b": json_response(201, {"ok": True}, {"x-id": "1"})}, default = text_response(body = "?"))\n'
        't = mock_service("t", interface("main", "tcp", 0), routes = {"PI": bytes_response(data = "1"), '
        '"PING": bytes_response(data = "2")})',
    )
    m = spec.services["m"]
    assert m.is_mock and m.interfaces[0].port > 0 and m.argv == ()
    config = m.mocks["main"]
    answers = {r.pattern.text: r.answer for r in config.routes}
    assert isinstance(answers["POST /a"], Dynamic) and answers["POST /a"].location.endswith("spec.star:1")
    assert answers["GET /b"] == MockResponse(201, b'{"ok":true}', (("content-type", "application/json"), ("x-id", "1")))
    assert config.default == MockResponse(200, b"?", (("content-type", "text/plain; charset=utf-8"),))
    assert config.validate == "off"
    wire = config.wire()
    assert isinstance(wire.routes[0].answer, Dynamic) and wire.routes[0].answer.fn is None
    assert [p for p, _ in spec.services["t"].mocks["main"].line_routes] == [b"PING", b"PI"]  # longest first


def test_syscall_faults_on_a_mock_are_refused_with_the_protocol_fault_to_write(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        _load(
            tmp_path,
            'm = mock_service("m", interface("main", "http", 0))\n'
            'fault_assumption("x", target = m, write = deny("EIO"))',
        )
    rendered = caught.value.render()
    assert "m is a mock" in rendered and "fault(m.main, error(" in rendered, rendered
