"""Hostile tokens and requests against the in-process app and the resource-side verifier (issue 10, item 2).

Forged and malformed JWTs at every place a bearer token is read (``/userinfo``, the admin API,
``/introspect`` as the token being introspected, ``/revocations`` as the caller, and
``broker.resource.BrokerTokenVerifier``); bodies over ``server.max_body_bytes``; repeated parameters;
Unicode look-alikes in redirect and resource URIs; CR/LF in ``state``. Each must get its 4xx, never a
500, and leave the stored state as it was: no code, refresh family, user, client, jti or revocation
row, no token issued, and no outbound fetch of a key the token points to.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from broker.resource import BrokerTokenVerifier
from broker.storage.models import (
    AuditEvent,
    AuthorizationCode,
    Client,
    Consent,
    PendingAuthorization,
    RefreshTokenFamily,
    Revocation,
    SeenJti,
    User,
)
from tests.conftest import ISSUER
from tests.support.hostile import AUTHORIZATION, verdict, watched_logs, wrong_claims
from tests.support.oauth_flow import (
    CLIENT_REDIRECT,
    DEMO_RESOURCE,
    allow_clients,
    authorize,
    authorize_params,
    pkce,
    query,
    register_client,
    tokens_for,
)

ADMIN_API = f"{ISSUER}/admin/api"
ATTACKER = "attacker.example"
ATTACKER_KEY = ec.generate_private_key(ec.SECP256R1())
ATTACKER_JWK = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ATTACKER_KEY.public_key())), "kid": "evil",
                "alg": "ES256", "use": "sig"}
MAX_BODY = 4096
MAX_HEADER = 1024 * 1024  # past the 100 KB token below: its JWS is read, not refused for its size
SCIM_TOKEN = secrets.token_urlsafe(30)
STORED = (AuthorizationCode, PendingAuthorization, RefreshTokenFamily, User, Client, SeenJti, Revocation, Consent)


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(server={"max_body_bytes": MAX_BODY, "max_header_bytes": MAX_HEADER},
                         scim={"enabled": True, "tokens": [{"idp": "test", "token": SCIM_TOKEN}]})


@pytest.fixture
def outbound(loopback: Any) -> list[str]:
    """Every URL the broker fetches; the attacker's host answers with the attacker's keys."""
    fetched: list[str] = []
    forward = loopback.handle_async_request

    async def recording(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return await forward(request)

    loopback.handle_async_request = recording
    loopback.others[ATTACKER] = lambda request: httpx.Response(200, json={"keys": [ATTACKER_JWK]})
    return fetched


def snapshot(state: Any) -> dict[str, int]:
    """Row counts of what a request could create, and how many tokens the audit log says were issued."""
    with state.database.sessions() as session:
        counts = {t.__tablename__: session.scalar(select(func.count()).select_from(t)) for t in STORED}
        counts["token.issued"] = session.scalar(select(func.count()).select_from(AuditEvent)
                                                .where(AuditEvent.event_type == "token.issued"))
        counts["audit_events"] = session.scalar(select(func.count()).select_from(AuditEvent))
    return counts


# ---------------------------------------------------------------- forged and malformed JWTs


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segment(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")))


def claims(**overrides: Any) -> dict[str, Any]:
    """What a genuine access token for the admin API would claim."""
    now = int(time.time())
    return {"iss": ISSUER, "sub": "robot", "aud": ADMIN_API, "client_id": "robot", "scope": "admin:read openid",
            "jti": uuid.uuid4().hex, "iat": now, "exp": now + 300, **overrides}


def es256(header: dict[str, Any], payload: dict[str, Any] | bytes, key: Any = ATTACKER_KEY) -> str:
    """A JWS signed with ``key``, with ``header`` exactly as given (plus ``alg``), whatever it says."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{segment({'alg': 'ES256', **header})}.{b64(body)}"
    signature = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).sign(signing_input.encode(), key)
    return f"{signing_input}.{b64(signature)}"


def hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """HMAC keyed with bytes PyJWT would refuse as a secret (a public key): the algorithm-confusion forgery."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def hostile_tokens(state: Any) -> dict[str, str]:
    """Named forgeries; ``kid`` is the broker's real key unless the case is about the kid."""
    with state.database.sessions() as session:
        broker_jwk = state.keyring.jwks(session, dt.timedelta(0))["keys"][0]
        testidp_key = state.testidp.keyring.active(session)
    kid = broker_jwk["kid"]
    public_pem = jwt.PyJWK(broker_jwk).key.public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    at = {"typ": "at+jwt", "kid": kid}
    genuine_claims = claims()
    return {
        "alg none": f"{segment({**at, 'alg': 'none'})}.{segment(genuine_claims)}.",
        "alg None": f"{segment({**at, 'alg': 'None'})}.{segment(genuine_claims)}.",
        "HS256 keyed with the public key PEM": hs256({**at, "alg": "HS256"}, genuine_claims, public_pem),
        "HS256 keyed with the public JWK": hs256({**at, "alg": "HS256"}, genuine_claims,
                                                 json.dumps(broker_jwk).encode()),
        "unknown kid": es256({**at, "kid": "no-such-key"}, genuine_claims),
        "the test IdP's key and kid": testidp_key.sign(genuine_claims, typ="at+jwt"),
        "the test IdP's key, the broker's kid": es256(at, genuine_claims, testidp_key.private_key),
        "jku elsewhere": es256({**at, "kid": "evil", "jku": f"https://{ATTACKER}/jwks"}, genuine_claims),
        "x5u elsewhere": es256({**at, "kid": "evil", "x5u": f"https://{ATTACKER}/cert.pem"}, genuine_claims),
        "embedded jwk": es256({**at, "kid": "evil", "jwk": ATTACKER_JWK}, genuine_claims),
        "100 KB header": es256({**at, "pad": "A" * 100_000}, genuine_claims),
        "nested JWT (cty JWT)": es256({**at, "cty": "JWT"}, es256(at, genuine_claims).encode()),
        "non-JSON payload": es256(at, b"\x00not json{"),
        "JSON array payload": es256(at, b"[1,2,3]"),
        "non-base64 segments": "@@@.###.$$$",
        "non-JSON header": f"{b64('not json')}.{segment(genuine_claims)}.{b64('sig')}",
        "kid is a list": es256({**at, "kid": [kid]}, genuine_claims),
        "two segments": f"{segment({**at, 'alg': 'ES256'})}.{segment(genuine_claims)}",
        "four segments": f"{segment({**at, 'alg': 'ES256'})}.{segment(genuine_claims)}.{b64('s')}.{b64('x')}",
        "five segments (JWE shape)": ".".join(b64(f"part{i}") for i in range(5)),
        "empty segments": "..",
    }


TOKEN_CASES = ["alg none", "alg None", "HS256 keyed with the public key PEM", "HS256 keyed with the public JWK",
               "unknown kid", "the test IdP's key and kid", "the test IdP's key, the broker's kid", "jku elsewhere",
               "x5u elsewhere", "embedded jwk", "100 KB header", "nested JWT (cty JWT)", "non-JSON payload",
               "JSON array payload", "non-base64 segments", "non-JSON header", "kid is a list", "two segments",
               "four segments", "five segments (JWE shape)", "empty segments"]


@pytest.fixture
def resource_server(state: Any) -> Any:
    return register_client(state, name="MCP server", auth_method="client_secret_basic", redirect_uris=[],
                           grant_types=(), may_introspect=True)


@pytest.mark.parametrize("case", TOKEN_CASES)
async def test_forged_bearer_tokens_are_refused_everywhere(client: httpx.AsyncClient, state: Any, app: Any,
                                                           outbound: list[str], resource_server: Any,
                                                           case: str) -> None:
    token = hostile_tokens(state)[case]
    before = snapshot(state)
    bearer = {"authorization": f"Bearer {token}"}

    userinfo = await client.get("/userinfo", headers=bearer)
    assert userinfo.status_code == 401, userinfo.text
    assert 'error="invalid_token"' in userinfo.headers["www-authenticate"]
    admin = await client.get("/admin/api/v1/servers", headers=bearer)
    assert admin.status_code == 401 and admin.json()["error"] == "invalid_token"
    assert admin.headers["www-authenticate"].startswith("Bearer ")
    introspected = await client.post("/introspect", data={"token": token},
                                     auth=(resource_server.row.id, resource_server.secret))
    if len(token) > MAX_BODY:  # the form cannot carry it
        assert introspected.status_code == 413
    else:
        assert introspected.status_code == 200 and introspected.json() == {"active": False}
    feed = await client.get("/revocations", headers=bearer)  # the feed wants client authentication
    assert feed.status_code == 401 and feed.json()["error"] == "invalid_client"
    async with verifier_for(app) as verifier:
        assert await verifier.verify_token(token) is None

    assert snapshot(state) == before
    assert not [url for url in outbound if ATTACKER in url]  # jku/x5u/jwk are never followed


@asynccontextmanager
async def verifier_for(app: Any) -> AsyncIterator[BrokerTokenVerifier]:
    """The resource-side verifier an MCP server would run, for the admin API's audience, fetching the JWKS
    from the app in-process."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http:
        yield BrokerTokenVerifier(ISSUER, ADMIN_API, http=http)


async def test_the_verifier_fetches_only_its_own_jwks_uri(app: Any, state: Any) -> None:
    """A token naming other key locations makes the verifier look at the broker's JWKS, nowhere else."""
    fetched: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(f"{request.url.host}{request.url.path}")
        return await httpx.ASGITransport(app=app).handle_async_request(request)

    tokens = hostile_tokens(state)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url=ISSUER) as http:
        verifier = BrokerTokenVerifier(ISSUER, ADMIN_API, http=http)
        for case in ("jku elsewhere", "x5u elsewhere", "embedded jwk"):
            assert await verifier.verify_token(tokens[case]) is None
    assert fetched == ["127.0.0.1/jwks"]  # one fetch (then rate-limited), and only of the configured URI


async def test_a_genuine_token_still_passes_everything_the_forgeries_fail(client: httpx.AsyncClient, state: Any,
                                                                          app: Any) -> None:
    """The control: the same endpoints accept a real admin API token, so the refusals above are about the forgery."""
    robot = register_client(state, name="Robot", auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",), scopes=("admin:read",))
    issued = await client.post("/token", data={"grant_type": "client_credentials", "resource": ADMIN_API},
                               auth=(robot.row.id, robot.secret))
    token = issued.json()["access_token"]
    assert (await client.get("/admin/api/v1/servers", headers={"authorization": f"Bearer {token}"})).status_code == 200
    async with verifier_for(app) as verifier:
        verified = await verifier.verify_token(token)
    assert verified is not None and verified.client_id == robot.row.id


async def test_many_and_repeated_authorization_headers(client: httpx.AsyncClient, state: Any) -> None:
    app_client = register_client(state)
    tokens = await tokens_for(client, app_client.row.id)
    before = snapshot(state)
    junk = [(f"x-junk-{i}", "y" * 100) for i in range(500)]
    many = await client.get("/userinfo", headers=[*junk, ("authorization", "Bearer not-a-token")])
    assert many.status_code == 401 and 'error="invalid_token"' in many.headers["www-authenticate"]
    # A genuine token next to a forged one: RFC 6750 §2 allows one method, so the request is refused.
    repeated = await client.get("/userinfo", headers=[("authorization", f"Bearer {tokens['access_token']}"),
                                                      ("authorization", "Bearer forged")])
    assert repeated.status_code == 400 and repeated.json()["error"] == "invalid_request"
    assert snapshot(state) == before


# ---------------------------------------------------------------- bodies over server.max_body_bytes


def chunks(total: int, size: int = 1024) -> Callable[[], AsyncIterator[bytes]]:
    async def stream() -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            yield b"a=" + b"b" * (size - 2)
            sent += size

    return stream


async def credentials_for(path: str, client: httpx.AsyncClient, state: Any) -> dict[str, str]:
    """Valid credentials where the route checks them before it reads the body."""
    if path.startswith("/scim/"):
        return {"authorization": f"Bearer {SCIM_TOKEN}"}
    if path.startswith("/admin/api/"):
        robot = register_client(state, name="Robot", auth_method="client_secret_basic", redirect_uris=[],
                                grant_types=("client_credentials",), scopes=("admin:write",))
        issued = await client.post("/token", data={"grant_type": "client_credentials", "resource": ADMIN_API},
                                   auth=(robot.row.id, robot.secret))
        return {"authorization": f"Bearer {issued.json()['access_token']}"}
    return {}


BODY_TARGETS = [("/token", "application/x-www-form-urlencoded"), ("/register", "application/json"),
                ("/revoke", "application/x-www-form-urlencoded"), ("/admin/api/v1/policy", "application/json"),
                ("/consent", "application/x-www-form-urlencoded"), ("/scim/v2/Users", "application/scim+json")]


@pytest.mark.parametrize(("path", "content_type"), BODY_TARGETS, ids=[p for p, _ in BODY_TARGETS])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_bodies_over_the_limit_are_413(client: httpx.AsyncClient, state: Any, path: str, content_type: str,
                                             framing: str) -> None:
    headers = {"content-type": content_type, **(await credentials_for(path, client, state))}
    before = snapshot(state)
    if framing == "content-length":
        response = await client.post(path, content=b"a=" + b"b" * MAX_BODY, headers=headers)
    else:
        response = await client.post(path, content=chunks(MAX_BODY * 4)(), headers=headers)
        assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "invalid_request" and response.headers["cache-control"] == "no-store"
    assert snapshot(state) == before


async def test_a_content_length_that_understates_the_body_is_still_413(app: Any, state: Any) -> None:
    """The declared length says small; the bytes that arrive are counted anyway."""
    before = snapshot(state)
    messages = [{"type": "http.request", "body": b"grant_type=" + b"x" * 1024, "more_body": True}] * 8
    messages.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/token", "raw_path": b"/token", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/x-www-form-urlencoded"),
                         (b"content-length", b"10")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert snapshot(state) == before


# ---------------------------------------------------------------- parameter pollution


REPEATABLE = ["redirect_uri", "resource", "scope", "client_id", "state"]


@pytest.mark.parametrize("name", REPEATABLE)
async def test_repeated_parameters_at_authorize_are_refused(client: httpx.AsyncClient, state: Any,
                                                            name: str) -> None:
    app_client = register_client(state)
    params = authorize_params(app_client.row.id, pkce()[1], scope="tools:read")
    second = {"redirect_uri": "http://127.0.0.1:9999/elsewhere", "resource": f"{ISSUER}/other/mcp",
              "scope": "admin:write", "client_id": "another-client", "state": "other-state"}[name]
    before = snapshot(state)
    response = await client.get("/authorize?" + urlencode([*params.items(), (name, second)]))
    if name in ("client_id", "redirect_uri"):
        # RFC 6749 §4.1.2.1: the redirect target is not established, so a page and never a redirect
        assert response.status_code == 400 and "location" not in response.headers
        assert "repeated" in response.text
    else:
        # Client and redirect URI are valid, so the error goes back to the client: RFC 6749 §3.1 for a
        # repeated parameter; RFC 8707 §2 invalid_target for two resources (one token, one audience).
        assert response.status_code == 302 and response.headers["location"].startswith(CLIENT_REDIRECT + "?")
        redirected = query(response.headers["location"])
        assert redirected["error"] == ("invalid_target" if name == "resource" else "invalid_request")
        assert "code" not in redirected and redirected["iss"] == ISSUER
    assert snapshot(state) == before


@pytest.mark.parametrize("name", REPEATABLE)
async def test_repeated_parameters_at_token_are_refused(client: httpx.AsyncClient, state: Any, name: str) -> None:
    app_client = register_client(state)
    verifier, challenge = pkce()
    redirect = await authorize(client, app_client.row.id, challenge)
    form = {"grant_type": "authorization_code", "code": redirect["code"], "redirect_uri": CLIENT_REDIRECT,
            "client_id": app_client.row.id, "code_verifier": verifier, "resource": DEMO_RESOURCE,
            "scope": "tools:read", "state": "s"}
    before = snapshot(state)
    response = await client.post("/token", content=urlencode([*form.items(), (name, form[name])]),
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert "repeated" in response.json()["error_description"]
    assert snapshot(state) == before  # the code is not even spent: the request never reached the grant
    retried = await client.post("/token", data=form)
    assert retried.status_code == 200, retried.text


# ---------------------------------------------------------------- Unicode look-alikes


LOOKALIKE_REDIRECTS = {
    "Cyrillic a": CLIENT_REDIRECT.replace("callback", "c\u0430llback"),
    "fullwidth": CLIENT_REDIRECT.replace("callback", "\uff43allback"),
    "zero-width space": CLIENT_REDIRECT.replace("callback", "call\u200bback"),
    "zero-width joiner in host": "http://127.0.0.1\u200d:9999/callback",
    "RTL override": CLIENT_REDIRECT + "\u202ekcabllac",
    "IDN homograph host": "http://\u0435xample.com/callback",
    "punycode of the homograph": "http://xn--xample-2of.com/callback",
    "fullwidth dot host": "http://127\uff0e0.0.1:9999/callback",
}


@pytest.mark.parametrize("uri", LOOKALIKE_REDIRECTS.values(), ids=LOOKALIKE_REDIRECTS.keys())
async def test_lookalike_redirect_uris_are_a_page_never_a_redirect(client: httpx.AsyncClient, state: Any,
                                                                   uri: str) -> None:
    app_client = register_client(state)
    before = snapshot(state)
    response = await client.get("/authorize?" + urlencode(authorize_params(app_client.row.id, pkce()[1],
                                                                           redirect_uri=uri)))
    assert response.status_code == 400 and "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert snapshot(state) == before


LOOKALIKE_RESOURCES = {
    "Cyrillic es": DEMO_RESOURCE.replace("mcp", "m\u0441p"),
    "fullwidth": DEMO_RESOURCE.replace("demo", "\uff44emo"),
    "zero-width space": DEMO_RESOURCE.replace("demo", "de\u200bmo"),
    "RTL override": DEMO_RESOURCE + "\u202e",
    "IDN homograph host": "https://\u0435xample.com/mcp",
}


@pytest.mark.parametrize("resource", LOOKALIKE_RESOURCES.values(), ids=LOOKALIKE_RESOURCES.keys())
async def test_lookalike_resources_are_invalid_targets(client: httpx.AsyncClient, state: Any, resource: str) -> None:
    app_client = register_client(state)
    robot = register_client(state, name="Robot", auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",), scopes=("tools:read",))
    allow_clients(state, robot.row.id)
    before = snapshot(state)
    response = await client.get("/authorize?" + urlencode(authorize_params(app_client.row.id, pkce()[1],
                                                                           resource=resource)))
    assert response.status_code == 302 and response.headers["location"].startswith(CLIENT_REDIRECT)
    assert query(response.headers["location"])["error"] == "invalid_target"
    machine = await client.post("/token", data={"grant_type": "client_credentials", "resource": resource},
                                auth=(robot.row.id, robot.secret))
    assert machine.status_code == 400 and machine.json()["error"] == "invalid_target"
    assert snapshot(state) == before


async def test_a_host_that_uts46_maps_to_a_registered_one_gets_its_canonical_audience(client: httpx.AsyncClient,
                                                                                       state: Any) -> None:
    """A fullwidth full stop in the host is a dot under UTS #46 (as browsers and resolvers read it), so it
    names the same server; the token's audience is that server's registered URI, never the look-alike."""
    robot = register_client(state, name="Robot", auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",), scopes=("tools:read",))
    allow_clients(state, robot.row.id)
    response = await client.post("/token", data={"grant_type": "client_credentials",
                                                  "resource": DEMO_RESOURCE.replace("127.0.0.1", "127\uff0e0.0.1")},
                                 auth=(robot.row.id, robot.secret))
    assert response.status_code == 200, response.text
    assert jwt.decode(response.json()["access_token"], options={"verify_signature": False})["aud"] == DEMO_RESOURCE


# ---------------------------------------------------------------- CR/LF in state


HOSTILE_STATES = {
    "CRLF header injection": "x\r\nSet-Cookie: injected=1\r\nLocation: https://attacker.example/",
    "bare LF": "x\nX-Injected: 1",
    "percent-encoded CRLF": "x%0d%0aSet-Cookie:%20injected=1",
    "controls": "x\x1b[31m\x7f\x08",
    "quotes and markup": "\"><script>alert(1)</script>",
}


def assert_clean_location(response: httpx.Response, expected_state: str) -> dict[str, str]:
    """No raw control character in Location, no header smuggled through it, and ``state`` intact."""
    location = response.headers["location"]
    assert not any(c in location for c in "\r\n\x00")
    assert all("injected" not in cookie for cookie in response.headers.get_list("set-cookie"))
    assert "x-injected" not in response.headers
    redirected = query(location)
    assert redirected["state"] == expected_state  # percent-encoded on the way out, decoded the same
    return redirected


@pytest.mark.parametrize("client_state", HOSTILE_STATES.values(), ids=HOSTILE_STATES.keys())
async def test_state_with_control_characters_round_trips_encoded(client: httpx.AsyncClient, state: Any,
                                                                 client_state: str) -> None:
    app_client = register_client(state)
    before = snapshot(state)
    error = await client.get("/authorize?" + urlencode(authorize_params(app_client.row.id, pkce()[1],
                                                                        state=client_state, code_challenge=None)))
    assert error.status_code == 302
    assert assert_clean_location(error, client_state)["error"] == "invalid_request"
    assert snapshot(state) == before
    verifier, challenge = pkce()
    success = await authorize(client, app_client.row.id, challenge, state=client_state)
    assert success["state"] == client_state and "code" in success
    assert "\r" not in success["location"] and "\n" not in success["location"]
    assert urlsplit(success["location"]).netloc == urlsplit(CLIENT_REDIRECT).netloc


def test_every_forgery_is_parametrised(state: Any) -> None:
    assert sorted(TOKEN_CASES) == sorted(hostile_tokens(state))


# ---------------------------------------------------------------- NUL bytes (PostgreSQL text cannot hold them)


# probe: (method, target, form body); each was a 500 on PostgreSQL or stored as sent on SQLite before
# broker.params refused NUL characters
NUL_PROBES = {
    "state at /authorize": ("GET", "/authorize?{valid}&state=x%00y", None),
    "nonce at /authorize": ("GET", "/authorize?{valid}&nonce=x%00y", None),
    "client_id at /authorize": ("GET", "/authorize?client_id=x%00y&redirect_uri=" + CLIENT_REDIRECT, None),
    "client_id at /token": ("POST", "/token", "grant_type=client_credentials&client_id=x%00y"),
    "client_id in Basic auth at /token": ("POST", "/token", "grant_type=client_credentials"),
    "code at /token": ("POST", "/token", "grant_type=authorization_code&code=x%00y"),
    "pending at /consent": ("GET", "/consent?pending=x%00y", None),
    "state at the upstream callback": ("GET", "/callback/test?state=x%00y&code=c", None),
    "user at the admin API": ("GET", "/admin/api/v1/users/x%00y", None),
    "server at the admin API": ("GET", "/admin/api/v1/servers/x%00y", None),
    "SCIM user id": ("GET", "/scim/v2/Users/x%00y", None),
    "SCIM filter": ("GET", "/scim/v2/Users?filter=userName%20eq%20%22x%00y%22", None),
}


@pytest.mark.parametrize("probe", NUL_PROBES.values(), ids=NUL_PROBES.keys())
async def test_a_nul_byte_anywhere_is_a_4xx(client: httpx.AsyncClient, state: Any, probe: tuple) -> None:
    method, target, form = probe
    app_client = register_client(state)
    target = target.replace("{valid}", urlencode(authorize_params(app_client.row.id, pkce()[1], state=None)))
    headers = {"content-type": "application/x-www-form-urlencoded", **(await credentials_for(target, client, state))}
    if target == "/token" and "client_id" not in form and "code" not in form:
        headers["authorization"] = "Basic " + base64.b64encode(b"x\x00y:secret").decode()
    before = snapshot(state)
    response = await client.request(method, target, content=form, headers=headers)
    if response.status_code == 302:  # an error for the client, at its registered redirect URI
        assert response.headers["location"].startswith(CLIENT_REDIRECT + "?")
        assert query(response.headers["location"])["error"] == "invalid_request"
    else:
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert snapshot(state) == before


# ---------------------------------------------------------------- the broker's own tokens, claims of the wrong type


def broker_signed(state: Any, claims: dict[str, Any], typ: str = "at+jwt") -> str:
    """What only the broker's signing key could produce: a valid signature over whatever claims."""
    with state.database.sessions() as session:
        key = state.keyring.active(session)
    return jwt.api_jws.encode(json.dumps(claims).encode(), key.private_key, algorithm=key.algorithm,
                              headers={"kid": key.kid, "typ": typ})


ACCESS_TOKEN_CLAIMS = ("iss", "sub", "aud", "client_id", "scope", "jti", "iat", "exp")  # RFC 9068 §2.2


async def test_a_broker_signed_token_with_any_claim_of_the_wrong_type_is_refused_everywhere(
        raw: httpx.AsyncClient, state: Any, app: Any, resource_server: Any) -> None:
    """/introspect, /userinfo, the admin API and the resource-side verifier read every claim of a token the
    broker signed: whatever shape a claim has, a required one missing or of the wrong JSON type (and an
    optional one of the wrong type) is 'not a valid token' everywhere, never a crash or a traceback."""
    robot = register_client(state, name="Robot", auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",), scopes=("admin:read",))
    genuine = claims(sub=robot.row.id, client_id=robot.row.id, scope="admin:read", email="robot@example.com",
                     acr="mfa", auth_time=int(time.time()))
    assert (await raw.get("/admin/api/v1/servers", headers={"authorization": f"Bearer {broker_signed(state, genuine)}"})
            ).status_code == 200  # the control: as it stands, the token is good
    before, problems, tried = snapshot(state), [], 0
    async with verifier_for(app) as verifier:
        for name, case, variant in wrong_claims(genuine):
            if case == "missing" and name not in ACCESS_TOKEN_CLAIMS:
                continue  # an optional claim may be absent
            token, tried = broker_signed(state, variant), tried + 1
            with watched_logs() as seen:
                introspected = await raw.post("/introspect", data={"token": token},
                                              auth=(resource_server.row.id, resource_server.secret))
                userinfo = await raw.get("/userinfo", headers={"authorization": f"Bearer {token}"})
                admin = await raw.get("/admin/api/v1/servers", headers={"authorization": f"Bearer {token}"})
                verified = await verifier.verify_token(token)
            statuses = (introspected.status_code, userinfo.status_code, admin.status_code)
            refused = (introspected.status_code == 413 or introspected.json() == {"active": False}) \
                and userinfo.status_code == 401 and admin.status_code == 401 and verified is None
            problem = verdict(max(statuses), seen)
            if problem or not refused:
                problems.append(f"{name} {case}: {statuses} {introspected.text[:60]} verified={verified is not None} "
                                f"{problem or ''}")
    assert tried > 150 and not problems, "\n".join(problems[:30])
    assert snapshot(state) == before


@pytest.fixture
async def raw(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client that reports a crash as the 500 a server would send, instead of raising it."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url=ISSUER) as http:
        yield http


# ---------------------------------------------------------------- malformed client credentials and metadata


BAD_BASIC = {name: value for name, value in AUTHORIZATION.items() if name.startswith("Basic") or name == "only spaces"}
CLIENT_AUTH = [("POST", "/token", "grant_type=client_credentials"), ("POST", "/revoke", "token=x"),
               ("POST", "/introspect", "token=x"), ("GET", "/revocations", None)]


@pytest.mark.parametrize("header", BAD_BASIC.values(), ids=BAD_BASIC.keys())
async def test_malformed_basic_credentials_are_401_invalid_client(raw: httpx.AsyncClient, state: Any,
                                                                  header: bytes) -> None:
    """RFC 6749 §2.3.1 and §5.2: credentials in the Authorization header that are not base64 of UTF-8
    ``client_id:client_secret`` are a 401 invalid_client at every endpoint that authenticates clients."""
    before = snapshot(state)
    for method, path, form in CLIENT_AUTH:
        with watched_logs() as seen:
            response = await raw.request(method, path, content=form, headers=[
                (b"authorization", header), (b"content-type", b"application/x-www-form-urlencoded")])
        assert verdict(response.status_code, seen) is None, (path, verdict(response.status_code, seen))
        if header.strip():  # a header of only spaces carries no credentials: the usual refusal
            assert response.status_code == 401, (path, response.status_code, response.text)
            assert response.json()["error"] == "invalid_client"
            assert response.headers["www-authenticate"].startswith("Basic")
    assert snapshot(state) == before


TYPE_CONFUSED_METADATA = {
    "redirect URI a number": {"redirect_uris": [1]},
    "redirect URI an object": {"redirect_uris": [{}]},
    "redirect URI null": {"redirect_uris": [None]},
    "redirect URIs a string": {"redirect_uris": "http://127.0.0.1/cb"},
    "grant type an object": {"redirect_uris": [CLIENT_REDIRECT], "grant_types": [{}]},
    "jwks a string": {"redirect_uris": [CLIENT_REDIRECT], "jwks": "x"},
    "jwks keys not objects": {"redirect_uris": [CLIENT_REDIRECT], "jwks": {"keys": [1]}},
    "client_uri a number": {"redirect_uris": [CLIENT_REDIRECT], "client_uri": 5},
    "client_name a list": {"redirect_uris": [CLIENT_REDIRECT], "client_name": ["x"]},
    "contacts a string": {"redirect_uris": [CLIENT_REDIRECT], "contacts": "a@example.com"},
    "token_endpoint_auth_method null": {"redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": None},
    "client_name with a NUL": {"redirect_uris": [CLIENT_REDIRECT], "client_name": "x\x00y"},
}


@pytest.mark.parametrize("metadata", TYPE_CONFUSED_METADATA.values(), ids=TYPE_CONFUSED_METADATA.keys())
async def test_client_metadata_of_the_wrong_type_is_invalid_client_metadata(raw: httpx.AsyncClient, state: Any,
                                                                            metadata: dict) -> None:
    before = snapshot(state)
    with watched_logs() as seen:
        response = await raw.post("/register", json=metadata)
    assert verdict(response.status_code, seen) is None
    assert response.status_code == 400 and response.json()["error"] in ("invalid_client_metadata",
                                                                         "invalid_redirect_uri"), response.text
    assert snapshot(state) == before


NESTED = {"arrays 40 deep": "[" * 40 + "]" * 40, "objects 40 deep": '{"a":' * 40 + "1" + "}" * 40,
          "arrays past the recursion limit": "[" * 1_500 + "]" * 1_500}  # deeper: tests/fuzz/test_hostile_classes.py


@pytest.mark.parametrize("body", NESTED.values(), ids=NESTED.keys())
async def test_json_nested_too_deep_is_a_400(raw: httpx.AsyncClient, state: Any, body: str) -> None:
    before = snapshot(state)
    with watched_logs() as seen:
        response = await raw.post("/register", content=body, headers={"content-type": "application/json"})
    assert verdict(response.status_code, seen) is None and response.status_code == 400, response.text
    assert snapshot(state) == before


# ---------------------------------------------------------------- log lines a request cannot forge


async def test_a_request_cannot_forge_a_line_of_the_text_log(raw: httpx.AsyncClient) -> None:
    """%0A (and CR, NEL, U+2028) in a path or a header is escaped in the text log: every line the broker
    writes starts with a level, or with '  | ' inside a traceback."""
    import io

    from broker import logs

    stream = io.StringIO()
    logs.configure("INFO", "text", stream)
    for path in ("/token%0Ainfo    broker.access: POST /token status=200", "/admin%0D%0Awarning broker: forged",
                 "/authorize%C2%85info broker: forged", "/x%E2%80%A8info broker: forged"):
        await raw.get(path, headers={"x-request-id": "a\nb", "user-agent": "ua\ninfo broker: forged"})
    lines = stream.getvalue().splitlines()
    assert lines and all(line.split(" ", 1)[0] in ("debug", "info", "warning", "error", "critical")
                         or line.startswith("  | ") for line in lines), lines
    assert not any("forged" in line and not line.startswith("info    broker.access") for line in lines)


async def test_a_request_head_over_the_limit_is_431_before_any_route_reads_it(raw: httpx.AsyncClient,
                                                                              state: Any) -> None:
    before = snapshot(state)
    for method, path in (("POST", "/token"), ("GET", "/admin/api/v1/servers"), ("GET", "/authorize"),
                         ("GET", "/userinfo"), ("POST", "/scim/v2/Users"), ("GET", "/nowhere")):
        response = await raw.request(method, path, headers={"x-padding": "a" * (MAX_HEADER + 1)})
        assert response.status_code == 431 and response.json()["error"] == "invalid_request", path
    assert snapshot(state) == before
