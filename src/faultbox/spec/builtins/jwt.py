"""JSON Web Tokens for mocked identity providers: jwt_keypair, jwt_sign, jwt_jwks.

Tokens are EdDSA (Ed25519) compact JWS strings, the keys are published as a JWKS document, so an
application under test verifies them exactly as it would verify a real provider's tokens. Signing
adds no claims of its own (no iat, no exp): a test states every claim its scenario depends on.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from faultbox.model.mock import json_body
from faultbox.spec.args import ArgError, register_type, register_type_name, type_name
from faultbox.spec.builtins import builtin
from faultbox.spec.builtins.mocks import json_arg
from faultbox.spec.registry import SpecBuilder

if TYPE_CHECKING:  # cryptography takes longer to import than the rest of the spec language: on first use
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ALGORITHM = "EdDSA"


class JwtKeypair:
    """An Ed25519 signing key and the key id published with it. Immutable, and its repr keeps the
    private key out of printed values and error messages."""

    __slots__ = ("_private", "kid")

    kid: str
    _private: Ed25519PrivateKey

    def __init__(self, kid: str, private: Ed25519PrivateKey) -> None:
        object.__setattr__(self, "kid", kid)
        object.__setattr__(self, "_private", private)

    def __setattr__(self, name: str, value: object) -> None:
        raise ArgError("a jwt_keypair cannot be changed; make a new one with jwt_keypair(...)")

    def __delattr__(self, name: str) -> None:
        raise ArgError("a jwt_keypair cannot be changed; make a new one with jwt_keypair(...)")

    def __dir__(self) -> list[str]:
        return ["kid"]

    def __repr__(self) -> str:
        return f'<jwt_keypair kid="{self.kid}" alg={ALGORITHM}>'

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def public_bytes(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


register_type_name(JwtKeypair, "jwt_keypair")
register_type("jwt_keypair", lambda v: isinstance(v, JwtKeypair), "a keypair from jwt_keypair()")


@builtin("jwt_keypair", "kid: str = 'faultbox-mock-key'")
def jwt_keypair(builder: SpecBuilder, kid: str) -> JwtKeypair:
    if not kid:
        raise ArgError(
            "jwt_keypair(): kid must not be empty", "tokens name their key by kid; give any non-empty string"
        )
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return JwtKeypair(kid, Ed25519PrivateKey.generate())


@builtin("jwt_sign", "keypair: jwt_keypair, claims: dict = {}")
def jwt_sign(builder: SpecBuilder, keypair: JwtKeypair, claims: dict[str, Any]) -> str:
    header = {"alg": ALGORITHM, "typ": "JWT", "kid": keypair.kid}
    for key in claims:
        if not isinstance(key, str):
            raise ArgError(f"jwt_sign(): claim names are strings, got {type_name(key)} {key!r}")
    payload = json_arg("jwt_sign(): claims are not JSON", claims)
    signing_input = _b64(json_body(header)) + "." + _b64(payload)
    return signing_input + "." + _b64(keypair.sign(signing_input.encode("ascii")))


@builtin("jwt_jwks", "keypair: jwt_keypair")
def jwt_jwks(builder: SpecBuilder, keypair: JwtKeypair) -> dict[str, Any]:
    key = {
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": ALGORITHM,
        "use": "sig",
        "kid": keypair.kid,
        "x": _b64(keypair.public_bytes()),
    }
    return {"keys": [key]}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
