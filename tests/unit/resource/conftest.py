"""A fake broker for resource-server tests: signing keys made here, a JWKS behind httpx.MockTransport."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.resource import BrokerTokenVerifier
from tests.support.clock import FakeClock

ISSUER = "http://127.0.0.1:8000"
RESOURCE = "http://127.0.0.1:8000/demo/mcp"
NOW = 1_800_000_000.0


class FakeBroker:
    """Signs broker-shaped RFC 9068 access tokens and serves the public keys at ``<issuer>/jwks``.

    ``publish(kid)`` / ``unpublish(kid)`` imitate rotation; ``jwks_fetches`` counts JWKS requests.
    """

    def __init__(self, issuer: str = ISSUER, resource: str = RESOURCE):
        self.issuer = issuer
        self.resource = resource
        self.clock = FakeClock(NOW)
        self.private: dict[str, tuple[Any, str]] = {}
        self.published: list[str] = []
        self.jwks_fetches = 0
        self.jwks_status = 200
        self._jwks_entries: dict[str, dict[str, Any]] = {}
        self.kid = self.add_key("ES256")

    def add_key(self, algorithm: str = "ES256", publish: bool = True) -> str:
        if algorithm == "ES256":
            key: Any = ec.generate_private_key(ec.SECP256R1())
            public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        kid = f"{algorithm.lower()}-{uuid.uuid4().hex[:8]}"
        self.private[kid] = (key, algorithm)
        self._jwks_entries[kid] = {**public, "kid": kid, "alg": algorithm, "use": "sig"}
        if publish:
            self.publish(kid)
        return kid

    def publish(self, kid: str) -> None:
        self.published.append(kid)

    def unpublish(self, kid: str) -> None:
        self.published.remove(kid)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._jwks_entries[kid] for kid in self.published]}

    def public_jwk(self, kid: str) -> dict[str, Any]:
        return self._jwks_entries[kid]

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(self.clock())
        claims = {"iss": self.issuer, "sub": "alice", "aud": self.resource, "client_id": "client-1",
                  "scope": "tools:read tools:call", "jti": uuid.uuid4().hex, "iat": now, "exp": now + 300,
                  "auth_time": now - 10, "email": "alice@example.com"}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, kid: str | None = None, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        kid = kid or self.kid
        key, algorithm = self.private[kid]
        header = {"kid": kid, "typ": "at+jwt", **(headers or {})}
        return jwt.encode(self.claims(**claims), key, algorithm=algorithm, headers=header)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and str(request.url) == f"{self.issuer}/jwks":
            self.jwks_fetches += 1
            return httpx.Response(self.jwks_status, json=self.jwks() if self.jwks_status == 200 else {"error": "x"})
        return httpx.Response(404)

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))

    def verifier(self, **kwargs: Any) -> BrokerTokenVerifier:
        kwargs.setdefault("http", self.http())
        kwargs.setdefault("clock", self.clock)
        return BrokerTokenVerifier(self.issuer, kwargs.pop("resource", self.resource), **kwargs)


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()
