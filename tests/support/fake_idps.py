"""Okta- and Entra-shaped upstream identity providers for tests, as small Starlette apps.

``FakeOkta`` is an Okta org with a custom authorization server (issuer ``{base}/oauth2/default``, or the
org server at ``{base}`` with ``authorization_server=None``); ``FakeEntra`` is Microsoft's login host
with tenants (issuer ``{base}/{tid}/v2.0``, multi-tenant discovery at ``{base}/organizations/v2.0``)
and Microsoft Graph's ``getMemberObjects`` at ``graph_endpoint``. Both publish discovery and a JWKS, sign
ID tokens with RS256, and implement the code flow the broker uses: ``/authorize`` signs the user named
by ``login_hint`` (or ``?user=``, or the first user) in at once and redirects back with a code;
``/token`` redeems it (PKCE S256, ``client_secret_basic`` or ``client_secret_post``, single use).

Use them in-process (``HostRouter`` sends each host's requests to its app, so base URLs can be the real
``https://acme.okta.com`` and ``https://login.microsoftonline.com``) or for real: ``serve(fake)`` runs
uvicorn on 127.0.0.1 in a background thread, ``stop()`` ends it. Every attribute is live: a test may
change users, errors or paging while the server runs.

Specifics on purpose: Okta's unassigned user comes back as ``error=access_denied`` with "User is not
assigned to the client application."; ``FakeOkta.api_error`` makes the token endpoint answer Okta's
``errorCode`` JSON; Entra puts group object ids in ``groups``, or, for a user with ``overage``,
``_claim_names``/``_claim_sources`` instead, so the groups must come from Graph.

``python -m tests.support.fake_idps`` serves both with demo users and prints their issuers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode, urlsplit

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.support.postgres import free_port

NOT_ASSIGNED = "User is not assigned to the client application."
CODE_LIFETIME = 60
TOKEN_LIFETIME = 3600


@dataclass
class FakeUser:
    """A user at a fake IdP; ``login`` is what ``login_hint`` names."""

    login: str
    subject: str  # Okta: the user id (00u...); Entra: the object id (oid)
    email: str
    name: str
    groups: list[str] = field(default_factory=list)  # Okta: names; Entra: group object ids
    tenant: str = ""  # Entra: the user's tenant id
    assigned: bool = True  # Okta: False -> access_denied "User is not assigned to the client application."
    overage: bool = False  # Entra: the ID token says _claim_names instead of carrying groups
    xms_edov: bool | None = None  # Entra: the optional claim "email domain owner verified", when configured


@dataclass
class FakeClient:
    """The broker's registration at the fake IdP."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    user: FakeUser
    nonce: str | None
    challenge: str
    scope: str
    issuer: str
    expires_at: float


class FakeUpstream:
    """What both fakes share: keys, users, clients, the authorization code flow and ID token signing."""

    oauth_error_descriptions = {"invalid_grant": "The authorization code is invalid or has expired.",
                                "invalid_client": "Client authentication failed."}
    sends_iss = False  # RFC 9207 iss on authorization responses (advertised in discovery when True)

    def __init__(self, base_url: str, users: list[FakeUser], clients: list[FakeClient]):
        self.base_url = base_url.rstrip("/")
        self.users = list(users)
        self.clients = {c.client_id: c for c in clients}
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)
        self.codes: dict[str, _Code] = {}
        self.requests: list[str] = []  # "METHOD path" of every request, for assertions
        self.token_requests: list[dict[str, str]] = []  # the token endpoint's forms, secrets removed
        self.refresh_tokens: list[str] = []  # every refresh token issued
        self.app = Starlette(routes=self.routes())
        self.app.add_middleware(_Recorder, log=self.requests)  # type: ignore[arg-type]

    def routes(self) -> list[Route]:
        raise NotImplementedError

    # ---- users and signing

    def user(self, login: str | None) -> FakeUser | None:
        if login is None:
            return self.users[0] if self.users else None
        return next((u for u in self.users if u.login.lower() == login.lower()), None)

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})

    def id_token_claims(self, code: _Code) -> dict[str, Any]:
        raise NotImplementedError

    # ---- the authorization endpoint

    async def authorize(self, request: Request, issuer: str) -> Response:
        params = request.query_params
        client = self.clients.get(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        if client is None or redirect_uri not in client.redirect_uris:
            return HTMLResponse("<h1>Unknown client or redirect URI</h1>", status_code=400)  # never redirect then
        user = self.user(params.get("login_hint") or params.get("user"))
        problem = self.authorize_problem(params, user)
        if problem is not None:
            return self.redirect(redirect_uri, {"error": problem[0], "error_description": problem[1]},
                                 params.get("state"), issuer)
        assert user is not None
        code = secrets.token_urlsafe(32)
        self.codes[code] = _Code(client.client_id, redirect_uri, user, params.get("nonce"),
                                 params["code_challenge"], params.get("scope", ""), issuer,
                                 time.time() + CODE_LIFETIME)
        return self.redirect(redirect_uri, {"code": code}, params.get("state"), issuer)

    def authorize_problem(self, params: Any, user: FakeUser | None) -> tuple[str, str] | None:
        if params.get("response_type") != "code":
            return "unsupported_response_type", "response_type must be code"
        if "openid" not in params.get("scope", "").split():
            return "invalid_scope", "The authorization request must include the openid scope."
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return "invalid_request", "PKCE code_challenge with S256 is required."
        if user is None:
            return "access_denied", "The user does not exist."
        if not user.assigned:
            return "access_denied", NOT_ASSIGNED
        return None

    def redirect(self, redirect_uri: str, params: dict[str, str], state: str | None, issuer: str) -> Response:
        if state is not None:
            params["state"] = state
        if self.sends_iss:
            params["iss"] = issuer  # RFC 9207
        return RedirectResponse(f"{redirect_uri}?{urlencode(params)}", status_code=302)

    # ---- the token endpoint

    async def token(self, request: Request) -> Response:
        form = dict(await request.form())
        self.token_requests.append({k: v for k, v in form.items() if k != "client_secret"})
        client_id = self.authenticate(request, form)
        if client_id is None:
            return self.oauth_error(401, "invalid_client")
        if form.get("grant_type") == "client_credentials":
            return self.client_credentials(request, form)
        if form.get("grant_type") != "authorization_code":
            return self.oauth_error(400, "unsupported_grant_type")
        code = self.codes.pop(form.get("code", ""), None)  # single use
        if code is None or not self.code_matches(code, client_id, form):
            return self.oauth_error(400, "invalid_grant")
        return JSONResponse(self.token_response(code), headers={"cache-control": "no-store"})

    def authenticate(self, request: Request, form: dict[str, Any]) -> str | None:
        """client_secret_basic or client_secret_post (RFC 6749 §2.3.1); ``None`` when it fails."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, secret = (unquote_plus(part) for part in decoded.partition(":"))
        client = self.clients.get(client_id or "")
        if client is None or not secret or not secrets.compare_digest(secret, client.client_secret):
            return None
        return client.client_id

    def code_matches(self, code: _Code, client_id: str, form: dict[str, Any]) -> bool:
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        return (code.client_id == client_id and code.redirect_uri == form.get("redirect_uri")
                and code.expires_at > time.time() and secrets.compare_digest(challenge, code.challenge))

    def token_response(self, code: _Code) -> dict[str, Any]:
        body = {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME, "scope": code.scope,
                "access_token": secrets.token_urlsafe(32), "id_token": self.sign(self.id_token_claims(code))}
        if "offline_access" in code.scope.split():
            body["refresh_token"] = secrets.token_urlsafe(32)
            self.refresh_tokens.append(body["refresh_token"])
        return body

    def client_credentials(self, request: Request, form: dict[str, Any]) -> Response:
        return self.oauth_error(400, "unsupported_grant_type")

    def oauth_error(self, status: int, error: str) -> Response:
        return JSONResponse({"error": error, "error_description": self.oauth_error_descriptions.get(error, error)},
                            status_code=status, headers={"cache-control": "no-store"})

    def standard_claims(self, code: _Code) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": code.issuer, "aud": code.client_id, "iat": now, "exp": now + 3600,
                                  "name": code.user.name}
        if code.nonce:
            claims["nonce"] = code.nonce
        return claims


# ---------------------------------------------------------------- Okta


class FakeOkta(FakeUpstream):
    """An Okta org: a custom authorization server (``authorization_server``, default ``"default"``) or, with
    ``authorization_server=None``, the org authorization server."""

    sends_iss = True

    def __init__(self, base_url: str, users: list[FakeUser], clients: list[FakeClient], *,
                 authorization_server: str | None = "default"):
        self.authorization_server = authorization_server
        prefix = f"/oauth2/{authorization_server}" if authorization_server else ""
        self.prefix = prefix
        self.endpoints = f"{prefix}/v1" if authorization_server else "/oauth2/v1"
        self.groups_claim = True  # the app's (or authorization server's) groups claim is configured
        self.api_error: tuple[int, str, str] | None = None  # the token endpoint answers Okta's errorCode JSON
        self.revoked: list[tuple[str, str, str]] = []  # (client id, token, token_type_hint) at /revoke
        super().__init__(base_url, users, clients)

    @property
    def issuer(self) -> str:
        return self.base_url + self.prefix

    def routes(self) -> list[Route]:
        return [Route(f"{self.prefix}/.well-known/openid-configuration", self.discovery),
                Route(f"{self.endpoints}/authorize", self.authorize_endpoint),
                Route(f"{self.endpoints}/token", self.token_endpoint, methods=["POST"]),
                Route(f"{self.endpoints}/revoke", self.revocation_endpoint, methods=["POST"]),
                Route(f"{self.endpoints}/keys", lambda request: JSONResponse(self.jwks()))]

    async def discovery(self, request: Request) -> Response:
        endpoints = self.base_url + self.endpoints
        return JSONResponse({
            "issuer": self.issuer, "authorization_endpoint": f"{endpoints}/authorize",
            "token_endpoint": f"{endpoints}/token", "jwks_uri": f"{endpoints}/keys",
            "revocation_endpoint": f"{endpoints}/revoke",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post",
                                                      "client_secret_jwt", "private_key_jwt", "none"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": self.sends_iss})

    async def authorize_endpoint(self, request: Request) -> Response:
        return await self.authorize(request, self.issuer)

    async def token_endpoint(self, request: Request) -> Response:
        if self.api_error is not None:
            status, code, summary = self.api_error
            return JSONResponse({"errorCode": code, "errorSummary": summary, "errorLink": code,
                                 "errorId": "oae" + secrets.token_hex(10), "errorCauses": []}, status_code=status)
        return await self.token(request)

    async def revocation_endpoint(self, request: Request) -> Response:
        """RFC 7009 as Okta answers it: 200 with no body for any token, once the client authenticates."""
        form = dict(await request.form())
        client_id = self.authenticate(request, form)
        if client_id is None:
            return self.oauth_error(401, "invalid_client")
        self.revoked.append((client_id, form.get("token", ""), form.get("token_type_hint", "")))
        return Response(status_code=200)

    def id_token_claims(self, code: _Code) -> dict[str, Any]:
        user = code.user
        claims = {**self.standard_claims(code), "sub": user.subject, "ver": 1, "amr": ["pwd"],
                  "idp": "00o" + "fake" * 4, "preferred_username": user.login, "auth_time": int(time.time()),
                  "email": user.email, "email_verified": True}
        if self.groups_claim and user.groups:
            claims["groups"] = list(user.groups)  # Okta sends groups only when configured (and there are some)
        return claims


# ---------------------------------------------------------------- Entra ID and Microsoft Graph


class FakeEntra(FakeUpstream):
    """Microsoft's login host for the tenants of ``users``, and Microsoft Graph at ``graph_endpoint``
    (default ``{base_url}/graph``; another host works in-process through ``HostRouter``)."""

    oauth_error_descriptions = {
        "invalid_grant": "AADSTS70008: The provided authorization code or refresh token has expired.",
        "invalid_client": "AADSTS7000215: Invalid client secret provided."}

    def __init__(self, base_url: str, users: list[FakeUser], clients: list[FakeClient], *,
                 graph_endpoint: str | None = None):
        self.graph_endpoint = graph_endpoint or base_url.rstrip("/") + "/graph"
        self.graph_page_size: int | None = None  # answer getMemberObjects in pages of this size
        self.graph_status: int | None = None  # answer every Graph call with this status (e.g. 403)
        self.app_tokens: dict[str, str] = {}  # Graph app token -> its tenant
        super().__init__(base_url, users, clients)

    def issuer(self, tenant: str) -> str:
        return f"{self.base_url}/{tenant}/v2.0"

    def routes(self) -> list[Route]:
        graph_users = f"{urlsplit(self.graph_endpoint).path}/v1.0/users/{{oid}}/getMemberObjects"
        return [Route("/{tenant}/v2.0/.well-known/openid-configuration", self.discovery),
                Route("/{tenant}/oauth2/v2.0/authorize", self.authorize_endpoint),
                Route("/{tenant}/oauth2/v2.0/token", self.token, methods=["POST"]),
                Route("/{tenant}/discovery/v2.0/keys", lambda request: JSONResponse(self.jwks())),
                Route(graph_users, self.member_objects, methods=["GET", "POST"])]

    async def discovery(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        return JSONResponse({
            "issuer": self.issuer("{tenantid}" if tenant in ("organizations", "common") else tenant),
            "authorization_endpoint": f"{self.base_url}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{self.base_url}/{tenant}/oauth2/v2.0/token",
            "jwks_uri": f"{self.base_url}/{tenant}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"], "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "name", "oid", "tid", "email",
                                 "preferred_username", "groups"]})

    async def authorize_endpoint(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        user = self.user(request.query_params.get("login_hint") or request.query_params.get("user"))
        if user is not None and tenant not in ("organizations", "common", user.tenant):
            return HTMLResponse("<h1>AADSTS50020: the user is not in this tenant</h1>", status_code=400)
        return await self.authorize(request, self.issuer(user.tenant if user else tenant))

    def id_token_claims(self, code: _Code) -> dict[str, Any]:
        user = code.user
        pairwise = hashlib.sha256(f"{user.subject}:{code.client_id}".encode()).digest()
        claims = {**self.standard_claims(code), "ver": "2.0", "tid": user.tenant, "oid": user.subject,
                  "sub": base64.urlsafe_b64encode(pairwise).rstrip(b"=").decode(),
                  "preferred_username": user.login, "email": user.email}
        if user.xms_edov is not None:
            claims["xms_edov"] = user.xms_edov
        if user.overage:
            claims["_claim_names"] = {"groups": "src1"}
            claims["_claim_sources"] = {"src1": {
                "endpoint": f"https://graph.windows.net/{user.tenant}/users/{user.subject}/getMemberObjects"}}
        elif user.groups:
            claims["groups"] = list(user.groups)
        return claims

    def client_credentials(self, request: Request, form: dict[str, Any]) -> Response:
        """The app-only token the broker asks for before calling Graph (scope ``{graph}/.default``)."""
        tenant = request.path_params["tenant"]
        if tenant in ("organizations", "common"):
            return self.oauth_error(400, "invalid_request")  # client credentials name a tenant
        if not form.get("scope", "").endswith("/.default"):
            return self.oauth_error(400, "invalid_scope")
        token = secrets.token_urlsafe(32)
        self.app_tokens[token] = tenant
        return JSONResponse({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                             "access_token": token})

    async def member_objects(self, request: Request) -> Response:
        """``getMemberObjects`` (POST), and its ``@odata.nextLink`` pages (GET)."""
        if self.graph_status is not None:
            return JSONResponse({"error": {"code": "Authorization_RequestDenied",
                                           "message": "Insufficient privileges to complete the operation."}},
                                status_code=self.graph_status)
        header = request.headers.get("authorization", "")
        tenant = self.app_tokens.get(header.removeprefix("Bearer "))
        user = next((u for u in self.users if u.subject == request.path_params["oid"]), None)
        if tenant is None:
            return JSONResponse({"error": {"code": "InvalidAuthenticationToken"}}, status_code=401)
        if user is None or user.tenant != tenant:
            return JSONResponse({"error": {"code": "Request_ResourceNotFound"}}, status_code=404)
        return JSONResponse(self.page(user, int(request.query_params.get("$skiptoken", "0"))))

    def page(self, user: FakeUser, start: int) -> dict[str, Any]:
        end = len(user.groups) if self.graph_page_size is None else start + self.graph_page_size
        body: dict[str, Any] = {"@odata.context": f"{self.graph_endpoint}/v1.0/$metadata#Collection(Edm.String)",
                                "value": user.groups[start:end]}
        if end < len(user.groups):
            body["@odata.nextLink"] = (f"{self.graph_endpoint}/v1.0/users/{user.subject}/getMemberObjects"
                                       f"?$skiptoken={end}")
        return body


# ---------------------------------------------------------------- serving for real


class RunningServer:
    """An ASGI app served by uvicorn on 127.0.0.1:``port`` in a daemon thread."""

    def __init__(self, app: Any, port: int):
        self.port = port
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, name=f"fake-idp-{port}", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"fake IdP on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def serve(fake: FakeUpstream) -> RunningServer:
    """Serve ``fake`` on the port of its ``base_url`` (build it with ``loopback_url()``)."""
    port = int(fake.base_url.rsplit(":", 1)[1])
    return RunningServer(fake.app, port).start()


def loopback_url() -> str:
    """A base URL on a port that is free right now."""
    return f"http://127.0.0.1:{free_port()}"


class HostRouter(httpx.AsyncBaseTransport):
    """An httpx transport that hands each request to the ASGI app registered for its host (in-process)."""

    def __init__(self, apps: dict[str, Any] | None = None):
        self.apps = dict(apps or {})

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        app = self.apps.get(request.url.host)
        if app is None:
            raise httpx.ConnectError(f"no app for host {request.url.host}", request=request)
        return await httpx.ASGITransport(app=app).handle_async_request(request)

    @property
    def app(self) -> Any:
        """The broker's own app (host 127.0.0.1), which the ``loopback`` fixture sets."""
        return self.apps.get("127.0.0.1")

    @app.setter
    def app(self, value: Any) -> None:
        self.apps["127.0.0.1"] = value


class _Recorder:
    """ASGI middleware: note ``METHOD path`` of every request (never a query or body)."""

    def __init__(self, app: Any, log: list[str]):
        self.app = app
        self.log = log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.log.append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


# ---------------------------------------------------------------- by hand


def demo(broker_issuer: str) -> tuple[FakeOkta, FakeEntra]:
    """Both fakes with two users each, registered for ``broker_issuer``'s callbacks ``okta`` and ``entra``."""
    okta = FakeOkta(loopback_url(), [
        FakeUser("alice@okta.example", "00u1alice", "alice@okta.example", "Alice Okta", ["engineering"]),
        FakeUser("una@okta.example", "00u2una", "una@okta.example", "Una Assigned-Not", assigned=False)],
        [FakeClient("okta-client", "okta-secret", [f"{broker_issuer}/callback/okta"])])
    tenant = "6a1b2c3d-0000-4000-8000-00000000e1e1"
    entra = FakeEntra(loopback_url(), [
        FakeUser("bob@entra.example", "0b0b0b0b-0000-4000-8000-000000000001", "bob@entra.example", "Bob Entra",
                 ["e0000000-0000-4000-8000-000000000001"], tenant=tenant),
        FakeUser("olga@entra.example", "0b0b0b0b-0000-4000-8000-000000000002", "olga@entra.example",
                 "Olga Overage", [f"e0000000-0000-4000-8000-{i:012d}" for i in range(1, 210)], tenant=tenant,
                 overage=True)],
        [FakeClient("entra-client", "entra-secret", [f"{broker_issuer}/callback/entra"])])
    return okta, entra


def main() -> None:
    import sys

    okta, entra = demo(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000")
    servers = [serve(okta), serve(entra)]
    print(f"okta  issuer {okta.issuer}  client okta-client / okta-secret", flush=True)
    print(f"entra issuer {entra.issuer(entra.users[0].tenant)}  client entra-client / entra-secret  "
          f"graph {entra.graph_endpoint}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
