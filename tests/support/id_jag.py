"""A fake enterprise IdP that signs ID-JAGs, and the broker settings that trust it.

Its JWKS is served through the ``loopback`` transport's ``others`` (no port), so tests can sign any
assertion, well-formed or hostile, with keys the broker really fetches and verifies.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import ISSUER

IDP_HOST = "idp.acme.test"
IDP_ISSUER = f"https://{IDP_HOST}"
ID_JAG_TYP = "oauth-id-jag+jwt"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def trusted_issuer(**overrides: Any) -> dict[str, Any]:
    """``[[id_jag.trusted_issuers]]`` for the fake IdP; its subjects are the test IdP's (``idp = "test"``)."""
    return {"id": "acme", "issuer": IDP_ISSUER, "jwks_uri": f"{IDP_ISSUER}/jwks", "algorithms": ["ES256", "RS256"],
            "idp": "test", **overrides}


class FakeIdp:
    def __init__(self) -> None:
        self.ec_key = ec.generate_private_key(ec.SECP256R1())
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.served = 0
        self.down = False

    def jwks(self) -> dict[str, Any]:
        ec_jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.ec_key.public_key(), as_dict=True)
        rsa_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa_key.public_key(), as_dict=True)
        return {"keys": [{**ec_jwk, "kid": "ec-1", "alg": "ES256", "use": "sig"},
                         {**rsa_jwk, "kid": "rsa-1", "alg": "RS256", "use": "sig"}]}

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.served += 1
        if self.down:
            return httpx.Response(503)
        return httpx.Response(200, json=self.jwks())

    def install(self, loopback: Any) -> FakeIdp:
        loopback.others[IDP_HOST] = self.handler
        return self

    def public_pem(self) -> bytes:
        return self.rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def claims(self, client_id: str, /, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": IDP_ISSUER, "sub": "alice", "aud": ISSUER, "client_id": client_id,
                  "jti": uuid.uuid4().hex, "iat": now, "exp": now + 300, "resource": f"{ISSUER}/demo/mcp",
                  "scope": "tools:read tools:call", "email": "alice@example.com", "email_verified": True}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def assertion(self, client_id: str, /, *, alg: str = "ES256", typ: str | None = ID_JAG_TYP, kid: str | None = None,
                  headers: dict[str, Any] | None = None, **overrides: Any) -> str:
        key = self.ec_key if alg == "ES256" else self.rsa_key
        header = {"kid": kid or ("ec-1" if alg == "ES256" else "rsa-1"), **(headers or {})}
        if typ is not None:
            header["typ"] = typ
        return jwt.encode(self.claims(client_id, **overrides), key, algorithm=alg, headers=header)


def grant_form(assertion: str, **extra: str) -> dict[str, str]:
    return {"grant_type": JWT_BEARER, "assertion": assertion, **extra}
