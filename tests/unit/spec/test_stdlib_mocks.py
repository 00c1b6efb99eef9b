"""@faultbox/mocks/http.star and @faultbox/mocks/jwt.star build the mock services they describe.
(Serving them is tested end to end elsewhere; here: the model a spec gets.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest

from faultbox.errors import SpecError
from faultbox.model.mock import Dynamic, MockConfig, MockResponse, MockRoute
from faultbox.model.service import Interface, Service
from faultbox.spec import load_spec
from faultbox.spec.registry import Spec

JSON = (("content-type", "application/json"),)


def _load(tmp_path: Path, body: str) -> Spec:
    spec = tmp_path / "spec.star"
    spec.write_text(body + "\ndef test_x():\n    pass\n")
    return load_spec(str(spec))


def _routes(svc: Service, interface: str = "main") -> dict[str, MockRoute]:
    config = svc.mocks[interface]
    assert isinstance(config, MockConfig) and config.protocol == "http"
    assert all(isinstance(r, MockRoute) for r in config.routes)
    return {r.pattern.text: r for r in config.routes}


def _json_answer(route: MockRoute) -> Any:
    answer = route.answer
    assert isinstance(answer, MockResponse) and answer.headers == JSON and answer.status == 200
    return json.loads(answer.body)


# -- http.server -----------------------------------------------------------------------------------


def test_http_server_plain_values_become_json(tmp_path: Path) -> None:
    loaded = _load(
        tmp_path,
        'load("@faultbox/mocks/http.star", "http")\n'
        'api = http.server("api", 18601, routes = {\n'
        '    "GET /v1/users/*": {"id": 1, "tags": ["a"]},\n'
        '    "GET /v1/users": [1, 2],\n'
        '    "GET /motd": "hello",\n'
        '    "GET /count": 42,\n'
        '    "GET /ratio": 0.5,\n'
        '    "GET /flag": True,\n'
        '    "GET /nothing": None,\n'
        "})",
    )
    svc = loaded.services["api"]
    assert svc.interfaces == (Interface("main", "http", 18601),)
    routes = _routes(svc)
    assert list(routes) == [
        "GET /v1/users/*",
        "GET /v1/users",
        "GET /motd",
        "GET /count",
        "GET /ratio",
        "GET /flag",
        "GET /nothing",
    ]
    assert routes["GET /v1/users/*"].answer == MockResponse(200, b'{"id":1,"tags":["a"]}', JSON)
    assert routes["GET /v1/users"].pattern.segments == ("v1", "users")
    bodies = {text: route.answer.body for text, route in routes.items() if isinstance(route.answer, MockResponse)}
    assert bodies == {
        "GET /v1/users/*": b'{"id":1,"tags":["a"]}',
        "GET /v1/users": b"[1,2]",
        "GET /motd": b'"hello"',
        "GET /count": b"42",
        "GET /ratio": b"0.5",
        "GET /flag": b"true",
        "GET /nothing": b"null",
    }
    assert all(r.answer == MockResponse(200, bodies[t], JSON) and r.source == "routes" for t, r in routes.items())


def test_http_server_keeps_responses_and_reexports(tmp_path: Path) -> None:
    loaded = _load(
        tmp_path,
        'load("@faultbox/mocks/http.star", "http")\n'
        'api = http.server("api", interface("public", "http", 18602), default = http.status_only(404),\n'
        "    routes = {\n"
        '        "POST /orders": http.json(status = 201, body = {"id": 7}),\n'
        '        "GET /health": http.status_only(204),\n'
        '        "GET /readme": http.text(body = "hi"),\n'
        '        "GET /old": http.redirect("/new"),\n'
        '        "* /echo/**": http.dynamic(lambda req: http.json(body = req["path"])),\n'
        '        "GET /same": json_response(status = 202, body = [1]),\n'
        "    })\n"
        'plain = http.server("plain", 18603)\n'
        'SAME = [http.json(status = 201, body = {"a": 1}) == json_response(status = 201, body = {"a": 1}),\n'
        '        http.text(body = "t") == text_response(body = "t"), http.status_only(500) == status_only(500),\n'
        '        http.redirect("/x", 301) == redirect("/x", 301), type(http.dynamic(lambda r: None))]',
    )
    assert loaded.root.globals["SAME"] == [True, True, True, True, "mock_response"]
    svc = loaded.services["api"]
    assert svc.interfaces == (Interface("public", "http", 18602),)
    assert svc.mocks["public"].default == MockResponse(404)
    routes = _routes(svc, "public")
    assert routes["POST /orders"].answer == MockResponse(201, b'{"id":7}', JSON)
    assert routes["GET /health"].answer == MockResponse(204)
    assert routes["GET /readme"].answer == MockResponse(200, b"hi", (("content-type", "text/plain; charset=utf-8"),))
    assert routes["GET /old"].answer == MockResponse(302, b"", (("location", "/new"),))
    assert routes["GET /same"].answer == MockResponse(202, b"[1]", JSON)
    echo = routes["* /echo/**"]
    assert echo.pattern.method == "*" and isinstance(echo.answer, Dynamic)
    assert echo.answer.fn({"path": "/echo/x"}) == MockResponse(200, b'"/echo/x"', JSON)
    plain = loaded.services["plain"]
    assert plain.mocks["main"] == MockConfig("http")


def test_http_server_depends_on_and_validate(tmp_path: Path) -> None:
    loaded = _load(
        tmp_path,
        'load("@faultbox/mocks/http.star", "http")\n'
        'db = http.server("db", 18604)\n'
        'api = http.server("api", 18605, depends_on = [db], routes = {"GET /": {}})',
    )
    svc = loaded.services["api"]
    assert svc.depends_on == ("db",)
    assert svc.mocks["main"].validate == "off"
    assert _json_answer(_routes(svc)["GET /"]) == {}
    with pytest.raises(SpecError, match="give openapi= too"):
        _load(tmp_path, 'load("@faultbox/mocks/http.star", "http")\nhttp.server("api", 18605, validate = "warn")')


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ('http.server("api", "8080")', r'http.server\("api"\): interface must be interface\(...\) or a port number'),
        ('http.server("api", 18606, routes = {"GET /": len})', r'route "GET /" answers function'),
        ('http.server("api", 18606, routes = {"GET /": struct(a = 1)})', r'route "GET /" answers struct'),
        ('http.server("api", 18606, routes = {"GET": {}})', "needs a method and a path"),
        ('http.server("api", 18606, tls = True)', "tls=True is not supported"),
    ],
)
def test_http_server_errors(tmp_path: Path, call: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        _load(tmp_path, f'load("@faultbox/mocks/http.star", "http")\napi = {call}')


# -- jwt.server ------------------------------------------------------------------------------------

JWT_ROUTES = ["GET /.well-known/jwks.json", "GET /jwks", "GET /.well-known/openid-configuration"]


def test_jwt_server_routes(tmp_path: Path) -> None:
    loaded = _load(
        tmp_path,
        'load("@faultbox/mocks/jwt.star", "jwt")\n'
        'db = service("db", "/bin/cat", interface("main", "tcp", 18610))\n'
        'auth = jwt.server("auth", 18611, issuer = "https://auth.example", key_id = "key-7", depends_on = [db])\n'
        "KIND = [type(auth.service), type(auth.keypair), auth.keypair.kid]",
    )
    g = loaded.root.globals
    assert g["KIND"] == ["service", "jwt_keypair", "key-7"]
    svc = loaded.services["auth"]
    assert svc.interfaces == (Interface("main", "http", 18611),)
    assert svc.depends_on == ("db",)
    routes = _routes(svc)
    assert list(routes) == JWT_ROUTES
    jwks = _json_answer(routes["GET /.well-known/jwks.json"])
    assert jwks == _json_answer(routes["GET /jwks"]) == g["auth"].jwks
    assert [k["kid"] for k in jwks["keys"]] == ["key-7"]
    assert isinstance(routes["GET /.well-known/openid-configuration"].answer, Dynamic)


def test_jwt_server_sign_verifies_against_served_jwks(tmp_path: Path) -> None:
    loaded = _load(
        tmp_path,
        'load("@faultbox/mocks/jwt.star", "jwt")\n'
        'auth = jwt.server("auth", interface("main", "http", 18612))\n'
        'DEFAULTED = auth.sign({"sub": "user-1", "exp": 4102444800})\n'
        'EXPLICIT = auth.sign(claims = {"iss": "someone-else"})\n'
        "EMPTY = auth.sign()\n"
        'OTHER = jwt.sign(jwt.keypair(kid = "k1"), {"sub": "user-1"})',
    )
    g = loaded.root.globals
    jwks = _json_answer(_routes(loaded.services["auth"])["GET /jwks"])
    key = pyjwt.PyJWK(jwks["keys"][0])
    issuer = "https://faultbox-auth.invalid"
    assert pyjwt.decode(g["DEFAULTED"], key, algorithms=["EdDSA"], issuer=issuer) == {
        "iss": issuer,
        "sub": "user-1",
        "exp": 4102444800,
    }
    assert pyjwt.decode(g["EXPLICIT"], key, algorithms=["EdDSA"]) == {"iss": "someone-else"}
    assert pyjwt.decode(g["EMPTY"], key, algorithms=["EdDSA"]) == {"iss": issuer}
    assert pyjwt.get_unverified_header(g["EMPTY"])["kid"] == "k1"
    with pytest.raises(pyjwt.InvalidSignatureError):  # same kid, another key: the server's JWKS refuses it
        pyjwt.decode(g["OTHER"], key, algorithms=["EdDSA"])
    # sign is usable from test code too
    token = g["auth"].sign({"sub": "later"})
    assert pyjwt.decode(token, key, algorithms=["EdDSA"])["sub"] == "later"


def test_jwt_discovery_names_the_address_consumers_use(tmp_path: Path) -> None:
    loaded = _load(
        tmp_path,
        'load("@faultbox/mocks/jwt.star", "jwt")\nauth = jwt.server("auth", 0, issuer = "https://i")',
    )
    svc = loaded.services["auth"]
    (iface,) = svc.interfaces
    assert iface.port != 0
    routes = _routes(svc)
    assert list(routes) == JWT_ROUTES
    discovery = routes["GET /.well-known/openid-configuration"].answer
    assert isinstance(discovery, Dynamic)
    request = {"method": "GET", "path": "/.well-known/openid-configuration", "headers": {}, "query": {}, "body": ""}
    answer = discovery.fn(request)
    assert isinstance(answer, MockResponse) and answer.headers == JSON
    assert json.loads(answer.body) == {
        "issuer": "https://i",
        # outside a test, the proxy's address is its placeholder (a test sees the live one)
        "jwks_uri": "http://__FB_PROXY_ADDR_auth__main__/.well-known/jwks.json",
        "id_token_signing_alg_values_supported": ["EdDSA"],
    }


def test_jwt_server_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r'jwt.server\("auth"\): interface must be interface'):
        _load(tmp_path, 'load("@faultbox/mocks/jwt.star", "jwt")\nauth = jwt.server("auth", "x")')
    with pytest.raises(SpecError, match="claims must be a dict"):
        _load(tmp_path, 'load("@faultbox/mocks/jwt.star", "jwt")\nauth = jwt.server("a", 18613)\nT = auth.sign(["x"])')
    with pytest.raises(SpecError, match="claims are not JSON"):
        _load(
            tmp_path,
            'load("@faultbox/mocks/jwt.star", "jwt")\nauth = jwt.server("a", 18614)\nT = auth.sign({"f": len})',
        )
