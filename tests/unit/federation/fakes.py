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
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from broker.config import IdpSettings
from broker.federation.discovery import discovery_url
from broker.federation.identity import Identity
from broker.federation.oidc import OidcConnector
from tests.support.clock import FakeClock

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
    """An OpenID provider at ``issuer`` (Okta-shaped endpoints by default) whose every answer a test can change.

    Requests are routed by the paths in ``discovery``, so a test may move the endpoints (Entra's shapes).
    """

    def __init__(self, clock: FakeClock | None = None, *, issuer: str = ISSUER,
                 key: FakeSigningKey | None = None):
        self.clock = clock or FakeClock(NOW)
        self.issuer = issuer
        self.key = key or FakeSigningKey()
        self.published: list[dict[str, Any]] = [self.key.jwk]
        self.discovery: dict[str, Any] = {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/v1/authorize",
            "token_endpoint": f"{issuer}/v1/token",
            "jwks_uri": f"{issuer}/v1/keys",
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
        claims = {"iss": self.issuer, "sub": "00u-alice", "aud": CLIENT_ID, "iat": now, "exp": now + 300,
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

    def connector(self, http: httpx.AsyncClient, cls: type[OidcConnector] = OidcConnector, *,
                  connector_args: dict[str, Any] | None = None, **settings: Any) -> Any:
        fields = {"id": "acme", "type": "oidc", "issuer": self.issuer, "client_id": CLIENT_ID,
                  "client_secret": CLIENT_SECRET, **settings}
        return cls(IdpSettings(**fields), redirect_uri=REDIRECT_URI, http=http, clock=self.clock,
                   **(connector_args or {}))

    def count(self, suffix: str) -> int:
        return sum(1 for r in self.requests if r.url.path.endswith(suffix))

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        override = self.routes.get(request.url.path)
        if override is not None:
            response = override(request)
            return await response if isinstance(response, Awaitable) else response
        if str(request.url.copy_with(query=None)) == discovery_url(self.issuer):
            return httpx.Response(200, json=self.discovery)
        if request.url.path == urlsplit(self.discovery["jwks_uri"]).path:
            return httpx.Response(200, json={"keys": self.published})
        if request.url.path == urlsplit(self.discovery["token_endpoint"]).path and request.method == "POST":
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


# ---------------------------------------------------------------- Entra ID shapes

ENTRA_LOGIN = "https://login.microsoftonline.com"
GRAPH = "https://graph.microsoft.com"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "0c1f5d2e-3b4a-4c6d-8e9f-a1b2c3d4e5f6"
ALICE_OID = "9f2c7d1e-5a3b-4c8d-9e0f-1a2b3c4d5e6f"
ENGINEERING_ID = "11111111-aaaa-4bbb-8ccc-000000000001"
EVERYONE_ID = "22222222-aaaa-4bbb-8ccc-000000000002"
SALES_ID = "33333333-aaaa-4bbb-8ccc-000000000003"


def entra_idp(clock: FakeClock | None = None, *, tenant: str = TENANT, multi: bool = False) -> FakeIdp:
    """A ``FakeIdp`` with Entra's v2.0 endpoint and claim shapes; ``multi`` serves ``/organizations``."""
    segment = "organizations" if multi else tenant
    idp = FakeIdp(clock, issuer=f"{ENTRA_LOGIN}/{segment}/v2.0", key=FakeSigningKey(kid="entra-kid-1"))
    idp.discovery |= {
        "issuer": f"{ENTRA_LOGIN}/{{tenantid}}/v2.0" if multi else idp.issuer,
        "authorization_endpoint": f"{ENTRA_LOGIN}/{segment}/oauth2/v2.0/authorize",
        "token_endpoint": f"{ENTRA_LOGIN}/{segment}/oauth2/v2.0/token",
        "jwks_uri": f"{ENTRA_LOGIN}/{segment}/discovery/v2.0/keys",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
    }
    idp.claim_changes |= {
        "iss": f"{ENTRA_LOGIN}/{tenant}/v2.0", "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "oid": ALICE_OID,
        "tid": tenant, "ver": "2.0", "preferred_username": "alice@contoso.example", "email": DROP,
        "email_verified": DROP, "groups": [ENGINEERING_ID, EVERYONE_ID], "amr": DROP, "acr": DROP,
        "auth_time": DROP}
    return idp


def overage_claims(tenant: str = TENANT, oid: str = ALICE_OID) -> dict[str, Any]:
    """What Entra sends instead of ``groups`` when the user has too many (the endpoint is never called)."""
    return {"groups": DROP, "_claim_names": {"groups": "src1"},
            "_claim_sources": {"src1": {"endpoint": f"https://graph.windows.net/{tenant}/users/{oid}/getMemberObjects"}}}


class FakeGroupDirectory:
    """``GroupDirectory`` test double: group ids per object id, or a failure to raise."""

    def __init__(self, groups: dict[str, list[str]] | None = None, failure: Exception | None = None):
        self.groups = groups or {}
        self.failure = failure
        self.calls: list[tuple[str, str]] = []

    async def member_groups(self, tenant_id: str, object_id: str) -> list[str]:
        self.calls.append((tenant_id, object_id))
        if self.failure is not None:
            raise self.failure
        return list(self.groups.get(object_id, []))


class FakeGraph:
    """Microsoft Graph's ``getMemberObjects`` and the client credentials grant that precedes it."""

    def __init__(self, graph: str = GRAPH):
        self.graph = graph
        self.member_objects: dict[str, list[str]] = {ALICE_OID: [ENGINEERING_ID, SALES_ID]}
        self.page_size: int | None = None
        self.token_status = 200
        self.token_body: Any = None
        self.status = 200
        self.body: Any = None  # served instead of the normal answer when set
        self.issued: list[str] = []
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/oauth2/v2.0/token"):
            return self._token(request)
        if request.headers.get("authorization") not in {f"Bearer {t}" for t in self.issued}:
            return httpx.Response(401, json={"error": {"code": "InvalidAuthenticationToken", "message": "no"}})
        if self.body is not None or self.status != 200:
            return httpx.Response(self.status, json=self.body)
        oid = request.url.path.split("/")[-2]
        start = int(request.url.params.get("$skiptoken", "0"))
        return httpx.Response(200, json=self._page(oid, start))

    def token_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/oauth2/v2.0/token")]

    def _token(self, request: httpx.Request) -> httpx.Response:
        if self.token_body is not None:
            return httpx.Response(self.token_status, json=self.token_body)
        token = f"graph-app-token-{len(self.issued)}"
        self.issued.append(token)
        return httpx.Response(200, json={"token_type": "Bearer", "expires_in": 3599, "access_token": token})

    def _page(self, oid: str, start: int) -> dict[str, Any]:
        values = self.member_objects.get(oid, [])
        end = len(values) if self.page_size is None else start + self.page_size
        page: dict[str, Any] = {"@odata.context": f"{self.graph}/v1.0/$metadata#Collection(Edm.String)",
                                "value": values[start:end]}
        if end < len(values):
            page["@odata.nextLink"] = f"{self.graph}/v1.0/users/{oid}/getMemberObjects?$skiptoken={end}"
        return page


def entra_client(idp: FakeIdp, graph: FakeGraph) -> httpx.AsyncClient:
    """One client for the login host and Graph: client credentials requests go to ``graph``."""
    async def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == urlsplit(graph.graph).hostname or b"grant_type=client_credentials" in request.content:
            return graph.handle(request)
        return await idp.handle(request)

    return httpx.AsyncClient(transport=httpx.MockTransport(route))
