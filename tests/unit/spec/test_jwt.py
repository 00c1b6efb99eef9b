"""jwt_keypair, jwt_sign and jwt_jwks: tokens a real JWT library (PyJWT) accepts against the JWKS."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest

from faultbox._util.frozen import freeze
from faultbox.errors import SpecError
from faultbox.spec import load_spec
from faultbox.spec.args import ArgError, type_name
from faultbox.spec.builtins import make_universe
from faultbox.spec.builtins.jwt import JwtKeypair
from faultbox.spec.registry import SpecBuilder


@pytest.fixture
def universe() -> dict[str, Any]:
    return make_universe(SpecBuilder("<test>"))


def _verify(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    key = pyjwt.PyJWK(jwks["keys"][0])
    claims: dict[str, Any] = pyjwt.decode(token, key, algorithms=["EdDSA"])
    return claims


def _segment(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_token_verifies_with_pyjwt(universe: dict[str, Any]) -> None:
    kp = universe["jwt_keypair"](kid="k-1")
    claims = {"sub": "user-1", "aud": "api", "exp": 4102444800, "roles": ["admin"], "n": 1.5, "ok": True, "x": None}
    token = universe["jwt_sign"](kp, claims)
    jwks = universe["jwt_jwks"](kp)
    key = pyjwt.PyJWK(jwks["keys"][0])
    assert pyjwt.decode(token, key, algorithms=["EdDSA"], audience="api") == claims
    assert pyjwt.get_unverified_header(token) == {"alg": "EdDSA", "typ": "JWT", "kid": "k-1"}


def test_token_is_compact_unpadded_and_adds_no_claims(universe: dict[str, Any]) -> None:
    kp = universe["jwt_keypair"]()
    token = universe["jwt_sign"](kp, claims={"sub": "u"})
    parts = token.split(".")
    assert len(parts) == 3 and "=" not in token
    assert all(set(p) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for p in parts)
    assert _segment(parts[0]) == {"alg": "EdDSA", "typ": "JWT", "kid": "faultbox-mock-key"}
    assert _segment(parts[1]) == {"sub": "u"}  # no iat, no exp
    assert _verify(universe["jwt_sign"](kp), universe["jwt_jwks"](kp)) == {}


def test_jwks_shape(universe: dict[str, Any]) -> None:
    kp = universe["jwt_keypair"](kid="main")
    jwks = universe["jwt_jwks"](kp)
    assert list(jwks) == ["keys"] and len(jwks["keys"]) == 1
    (key,) = jwks["keys"]
    assert {k: v for k, v in key.items() if k != "x"} == {
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "kid": "main",
    }
    assert "=" not in key["x"] and len(base64.urlsafe_b64decode(key["x"] + "=")) == 32
    assert "d" not in key  # the private part is never published


def test_every_keypair_is_fresh_and_tokens_do_not_cross(universe: dict[str, Any]) -> None:
    a = universe["jwt_keypair"](kid="same")
    b = universe["jwt_keypair"](kid="same")
    assert universe["jwt_jwks"](a)["keys"][0]["x"] != universe["jwt_jwks"](b)["keys"][0]["x"]
    token = universe["jwt_sign"](a, {"sub": "u"})
    with pytest.raises(pyjwt.InvalidSignatureError):
        _verify(token, universe["jwt_jwks"](b))


def test_frozen_claims_are_signed(universe: dict[str, Any]) -> None:
    kp = universe["jwt_keypair"]()
    claims = freeze({"sub": "u", "scope": {"read": ["a", "b"]}})
    assert _verify(universe["jwt_sign"](kp, claims), universe["jwt_jwks"](kp)) == {
        "sub": "u",
        "scope": {"read": ["a", "b"]},
    }


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"f": len}, "claims are not JSON"),
        ({"n": float("nan")}, "claims are not JSON"),
        ({"nested": {"b": b"raw"}}, "claims are not JSON"),
        ({1: "x"}, "claim names are strings"),
        (["sub"], "claims must be a dict"),
    ],
)
def test_bad_claims(universe: dict[str, Any], claims: Any, message: str) -> None:
    kp = universe["jwt_keypair"]()
    with pytest.raises(ArgError, match=message):
        universe["jwt_sign"](kp, claims)


def test_bad_arguments(universe: dict[str, Any]) -> None:
    with pytest.raises(ArgError, match="keypair must be a keypair from jwt_keypair"):
        universe["jwt_sign"]({"kid": "k"}, {})
    with pytest.raises(ArgError, match="keypair must be"):
        universe["jwt_jwks"]("k")
    with pytest.raises(ArgError, match="kid must not be empty"):
        universe["jwt_keypair"](kid="")


def test_keypair_value(universe: dict[str, Any]) -> None:
    kp = universe["jwt_keypair"](kid="k9")
    assert isinstance(kp, JwtKeypair) and type_name(kp) == "jwt_keypair"
    assert kp.kid == "k9" and dir(kp) == ["kid"]
    assert repr(kp) == '<jwt_keypair kid="k9" alg=EdDSA>'
    with pytest.raises(ArgError, match="cannot be changed"):
        kp.kid = "other"


def test_builtins_from_a_spec(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text(
        'kp = jwt_keypair(kid = "spec-key")\n'
        'CLAIMS = {"sub": "u1", "groups": ["a"]}\n'  # frozen once the module has run
        "TOKEN = jwt_sign(kp, claims = CLAIMS)\n"
        "JWKS = jwt_jwks(kp)\n"
        'KIND = type(kp) + " " + kp.kid\n'
        "def test_x():\n    pass\n"
    )
    loaded = load_spec(str(spec))
    g = loaded.root.globals
    assert g["KIND"] == "jwt_keypair spec-key"
    assert _verify(g["TOKEN"], g["JWKS"]) == {"sub": "u1", "groups": ["a"]}
    assert json.loads(json.dumps(g["JWKS"])) == g["JWKS"]  # a plain JSON document for json_response()


def test_bad_claims_in_a_spec_point_at_the_line(tmp_path: Path) -> None:
    spec = tmp_path / "spec.star"
    spec.write_text('kp = jwt_keypair()\nTOKEN = jwt_sign(kp, {"f": len})\ndef test_x():\n    pass\n')
    with pytest.raises(SpecError, match="claims are not JSON") as info:
        load_spec(str(spec))
    assert info.value.location is not None and info.value.location.line == 2
