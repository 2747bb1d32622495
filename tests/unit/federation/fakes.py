"""A fake upstream OpenID provider behind ``httpx.MockTransport``, with keys made in the test.

``FakeIdp`` serves discovery, a JWKS and a token endpoint, records every request, and lets a
test change any part of its behaviour: the claims or header of the next ID token, a raw ID
token, the token endpoint's status and body, or a whole endpoint (``idp.routes[path] = handler``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from broker.config import IdpSettings
from broker.federation.identity import Identity
from broker.federation.oidc import OidcConnector

ISSUER = "https://idp.example.com/oauth2/default"
CLIENT_ID = "broker-client"
CLIENT_SECRET = "s3cret/with+special:chars"
REDIRECT_URI = "https://broker.example.com/callback/acme"
NOW = 1_800_000_000.0
NONCE = "nonce-4f1c2a9e7d"
CODE = "upstream-authorization-code-77"
VERIFIER = "verifier-" + "k" * 40
REFRESH_TOKEN = "upstream-refresh-token-secret-42"
DROP = object()  # a claim or header value that removes the member

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


class FakeClock:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSigningKey:
    """A key pair for one algorithm; ``jwk`` is its public half as an IdP publishes it."""

    def __init__(self, alg: str = "RS256", kid: str = "key-1"):
        self.alg = alg
        self.kid = kid
        self.private_key = _generate(alg)
        algorithm = jwt.get_algorithm_by_name(alg)
        self.jwk: dict[str, Any] = {**json.loads(algorithm.to_jwk(self.private_key.public_key())),
                                    "kid": kid, "use": "sig", "alg": alg}

    def sign(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        headers = {k: v for k, v in {"kid": self.kid, "typ": "JWT", **(header or {})}.items() if v is not DROP}
        if "kid" not in headers:
            # PyJWT adds nothing by itself; build the token so the header really has no kid
            return _compact(headers | {"alg": self.alg}, claims, lambda data: _raw_signature(self, data))
        return jwt.encode(claims, self.private_key, algorithm=self.alg, headers=headers)

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)


class FakeIdp:
    """An OpenID provider at ``ISSUER`` whose every answer a test can change."""

    def __init__(self, clock: FakeClock | None = None):
        self.clock = clock or FakeClock()
        self.key = FakeSigningKey()
        self.published: list[dict[str, Any]] = [self.key.jwk]
        self.discovery: dict[str, Any] = {
            "issuer": ISSUER,
            "authorization_endpoint": f"{ISSUER}/v1/authorize",
            "token_endpoint": f"{ISSUER}/v1/token",
            "jwks_uri": f"{ISSUER}/v1/keys",
            "response_types_supported": ["code"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        }
        self.claim_changes: dict[str, Any] = {}
        self.header_changes: dict[str, Any] = {}
        self.signing_key: FakeSigningKey | None = None  # sign with this instead of self.key
        self.id_token: str | None = None  # served as is when set
        self.token_status = 200
        self.token_body: Any = None  # served (as JSON) instead of the normal body when set
        self.refresh_token: str | None = REFRESH_TOKEN
        self.requests: list[httpx.Request] = []
        self.routes: dict[str, Handler] = {}

    # ---- what the IdP issues

    def claims(self) -> dict[str, Any]:
        now = int(self.clock())
        claims = {"iss": ISSUER, "sub": "00u-alice", "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                  "auth_time": now - 5, "nonce": NONCE, "email": "alice@example.com", "email_verified": True,
                  "name": "Alice Anders", "groups": ["engineering", "everyone"], "amr": ["pwd", "mfa"],
                  "acr": "urn:okta:loa:2fa:any"}
        claims.update(self.claim_changes)
        return {k: v for k, v in claims.items() if v is not DROP}

    def issue_id_token(self) -> str:
        if self.id_token is not None:
            return self.id_token
        return (self.signing_key or self.key).sign(self.claims(), self.header_changes)

    # ---- HTTP

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def connector(self, http: httpx.AsyncClient, **settings: Any) -> OidcConnector:
        fields = {"id": "acme", "type": "oidc", "issuer": ISSUER, "client_id": CLIENT_ID,
                  "client_secret": CLIENT_SECRET, **settings}
        return OidcConnector(IdpSettings(**fields), redirect_uri=REDIRECT_URI, http=http, clock=self.clock)

    def count(self, suffix: str) -> int:
        return sum(1 for r in self.requests if r.url.path.endswith(suffix))

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        override = self.routes.get(request.url.path)
        if override is not None:
            response = override(request)
            return await response if isinstance(response, Awaitable) else response
        if request.url.path == "/oauth2/default/.well-known/openid-configuration":
            return httpx.Response(200, json=self.discovery)
        if request.url.path == "/oauth2/default/v1/keys":
            return httpx.Response(200, json={"keys": self.published})
        if request.url.path == "/oauth2/default/v1/token" and request.method == "POST":
            return self._token(request)
        return httpx.Response(404, json={"error": "not_found"})

    def _token(self, request: httpx.Request) -> httpx.Response:
        if self.token_body is not None:
            return httpx.Response(self.token_status, json=self.token_body)
        body: dict[str, Any] = {"access_token": "upstream-access-token", "token_type": "Bearer", "expires_in": 3600,
                                "id_token": self.issue_id_token()}
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        return httpx.Response(self.token_status, json=body)


async def log_in(connector: OidcConnector, nonce: str = NONCE) -> Identity:
    return await connector.complete(code=CODE, code_verifier=VERIFIER, nonce=nonce)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A JWS built by hand, for tokens no library would produce."""
    return _compact(header, claims, lambda _: signature)


def _compact(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def _raw_signature(key: FakeSigningKey, data: bytes) -> bytes:
    algorithm = jwt.get_algorithm_by_name(key.alg)
    return algorithm.sign(data, algorithm.prepare_key(key.private_key))


def _generate(alg: str) -> Any:
    if alg.startswith(("RS", "PS")):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
    return ec.generate_private_key(curve)
