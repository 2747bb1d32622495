"""The JWT bearer grant for ID-JAGs: the broker as the resource authorization server (issue 8).

A fake enterprise IdP signs assertions with keys the broker fetches over (loopback) HTTP. Every
check the ID-JAG draft asks of a resource authorization server has a test that fails it, and every
refusal leaves no trace but an audit event.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import func, select

from broker.federation.identity import Identity
from broker.keys.crypto import Encryptor
from broker.lifecycle import offboarding
from broker.oauth import provisioning
from broker.storage.models import AuditEvent, SeenJti, UpstreamIdentity, User, utcnow
from tests.conftest import ISSUER
from tests.support.hostile import signed, verdict, watched_logs, wrong_claims
from tests.support.id_jag import ID_JAG_TYP, IDP_ISSUER, JWT_BEARER, FakeIdp, grant_form, trusted_issuer
from tests.support.oauth_flow import DEMO_RESOURCE, register_client


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(id_jag={"trusted_issuers": [trusted_issuer()]})


@pytest.fixture
def idp(loopback: Any) -> FakeIdp:
    return FakeIdp().install(loopback)


@pytest.fixture
def agent(state: Any) -> Any:
    return register_client(state, name="Agent", auth_method="client_secret_basic", redirect_uris=[],
                           grant_types=(JWT_BEARER,))


@pytest.fixture
def alice(state: Any) -> str:
    """Alice, known from an earlier sign-in through the test IdP, in engineering (the dev policy's group)."""
    return sign_in(state, "alice", ("engineering",))


def sign_in(state: Any, username: str, groups: tuple[str, ...]) -> str:
    identity = Identity(idp_id="test", subject=username, email=f"{username}@example.com", email_verified=True,
                        name=username, groups=groups, claims={"sub": username}, auth_time=None, acr=None, amr=())
    with state.database.transaction() as session:
        encryptor = Encryptor(state.settings.key_encryption_key())
        return provisioning.upsert_user(session, identity, encryptor, utcnow()).id


def trusting(settings: Any, **overrides: Any) -> Any:
    """The same broker (same database and key-encryption key), trusting the fake IdP differently."""
    from broker.config import IdJagSettings, TrustedAssertionIssuer

    trusted = TrustedAssertionIssuer(**trusted_issuer(**overrides))
    return settings.model_copy(update={"id_jag": IdJagSettings(trusted_issuers=[trusted])})


async def redeem(client: httpx.AsyncClient, agent: Any, assertion: str, **extra: str) -> httpx.Response:
    return await client.post("/token", data=grant_form(assertion, **extra), auth=(agent.row.id, agent.secret))


def counts(state: Any) -> dict[str, int]:
    with state.database.sessions() as session:
        return {table.__name__: session.scalar(select(func.count()).select_from(table))
                for table in (User, UpstreamIdentity, SeenJti)}


def rejections(state: Any) -> list[dict[str, Any]]:
    with state.database.sessions() as session:
        return [e.data for e in session.scalars(select(AuditEvent).where(AuditEvent.event_type == "id_jag.rejected"))]


async def test_an_id_jag_buys_an_access_token_for_its_one_mcp_server(client, state, idp, agent, alice) -> None:
    response = await redeem(client, agent, idp.assertion(agent.row.id))
    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body and body["token_type"] == "Bearer"
    assert body["scope"] == "tools:call tools:read"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["aud"] == DEMO_RESOURCE and claims["sub"] == alice and claims["client_id"] == agent.row.id
    assert claims["iss"] == ISSUER
    active = await client.post("/introspect", data={"token": body["access_token"]}, auth=(agent.row.id, agent.secret))
    assert active.status_code in (200, 401, 403)  # the agent may not introspect; the token is checked below
    with state.database.sessions() as session:
        issued = session.scalars(select(AuditEvent).where(AuditEvent.event_type == "token.issued")).all()
    assert [e.data["grant"] for e in issued] == ["jwt-bearer"]
    assert issued[0].data["issuer"] == "acme" and issued[0].user_id == alice


async def test_rs256_and_the_resource_parameter_repeating_the_assertion(client, state, idp, agent, alice) -> None:
    response = await redeem(client, agent, idp.assertion(agent.row.id, alg="RS256"), resource=DEMO_RESOURCE)
    assert response.status_code == 200, response.text


async def test_scopes_are_requested_and_assertion_and_policy(client, state, idp, agent, alice) -> None:
    narrowed = await redeem(client, agent, idp.assertion(agent.row.id, scope="tools:read"))
    assert narrowed.json()["scope"] == "tools:read"
    asked = await redeem(client, agent, idp.assertion(agent.row.id), scope="tools:call")
    assert asked.json()["scope"] == "tools:call"
    escalated = await redeem(client, agent, idp.assertion(agent.row.id, scope="tools:read"), scope="tools:call")
    assert escalated.status_code == 400 and escalated.json()["error"] == "invalid_scope"
    ignored = await redeem(client, agent, idp.assertion(agent.row.id, scope="tools:read openid admin:write"))
    assert ignored.json()["scope"] == "tools:read"  # what the server does not define is dropped, never granted


async def test_policy_decides_too(client, state, idp, agent, alice) -> None:
    sign_in(state, "bob", ("sales",))
    denied = await redeem(client, agent, idp.assertion(agent.row.id, sub="bob", email="bob@example.com"))
    assert denied.status_code == 400 and denied.json()["error"] == "invalid_grant"


def _hs256_with_public_key(idp: FakeIdp, client_id: str) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": ID_JAG_TYP, "kid": "rsa-1"}).encode())
    payload = b64(json.dumps(idp.claims(client_id)).encode())
    signature = hmac.new(idp.public_pem(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def _alg_none(idp: FakeIdp, client_id: str) -> str:
    return jwt.encode(idp.claims(client_id), key=None, algorithm="none", headers={"typ": ID_JAG_TYP})


def _own(state: Any, client_id: str) -> str:
    with state.database.transaction() as session:
        claims = {**FakeIdp().claims(client_id), "iss": ISSUER}
        return state.keyring.active(session).sign(claims, typ=ID_JAG_TYP)


HOSTILE = {
    "typ JWT": lambda idp, c, s: idp.assertion(c, typ="JWT"),
    "typ missing": lambda idp, c, s: idp.assertion(c, typ=None),
    "typ at+jwt": lambda idp, c, s: idp.assertion(c, typ="at+jwt"),
    "alg none": lambda idp, c, s: _alg_none(idp, c),
    "HS256 keyed with the public key": lambda idp, c, s: _hs256_with_public_key(idp, c),
    "untrusted issuer": lambda idp, c, s: idp.assertion(c, iss="https://evil.example"),
    "wrong audience": lambda idp, c, s: idp.assertion(c, aud="https://other-as.example"),
    "two audiences": lambda idp, c, s: idp.assertion(c, aud=[ISSUER, "https://other-as.example"]),
    "another client": lambda idp, c, s: idp.assertion(c, client_id="someone-else"),
    "unknown resource": lambda idp, c, s: idp.assertion(c, resource="https://unknown.example/mcp"),
    "malformed resource": lambda idp, c, s: idp.assertion(c, resource="not a uri"),
    "expired": lambda idp, c, s: idp.assertion(c, iat=int(time.time()) - 1000, exp=int(time.time()) - 600),
    "issued in the future": lambda idp, c, s: idp.assertion(c, iat=int(time.time()) + 3600,
                                                            exp=int(time.time()) + 3900),
    "lives too long": lambda idp, c, s: idp.assertion(c, exp=int(time.time()) + 86400),
    "no jti": lambda idp, c, s: idp.assertion(c, jti=None),
    "no sub": lambda idp, c, s: idp.assertion(c, sub=None),
    "string exp": lambda idp, c, s: idp.assertion(c, exp=str(int(time.time()) + 300)),
    "unknown kid": lambda idp, c, s: idp.assertion(c, kid="not-published"),
    "signed by another key": lambda idp, c, s: FakeIdp().assertion(c),
    "nested JWT": lambda idp, c, s: idp.assertion(c, headers={"cty": "JWT"}),
    "issued by the broker itself": lambda idp, c, s: _own(s, c),
    "not a JWT": lambda idp, c, s: "not-a-jwt",
    "garbage segments": lambda idp, c, s: "a.b.c",
    "unknown subject": lambda idp, c, s: idp.assertion(c, sub="mallory"),
    "scope not a string": lambda idp, c, s: idp.assertion(c, scope=["tools:read"]),
}


@pytest.mark.parametrize("attack", sorted(HOSTILE))
async def test_hostile_assertions_get_invalid_grant_and_leave_only_an_audit_event(client, state, idp, agent, alice,
                                                                                  attack) -> None:
    assertion = HOSTILE[attack](idp, agent.row.id, state)
    before = counts(state)
    response = await redeem(client, agent, assertion)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant", response.json()
    assert response.headers["cache-control"] == "no-store"
    assert counts(state) == before  # no user, no identity, no jti recorded
    assert len(rejections(state)) == 1
    assert assertion not in str(rejections(state))  # never the assertion itself


REQUIRED = ("iss", "sub", "aud", "client_id", "jti", "exp", "iat")  # broker.oauth.id_jag.REQUIRED_CLAIMS


async def test_an_assertion_with_any_claim_of_the_wrong_type_is_refused_cleanly(app, state, idp, agent,
                                                                                 alice) -> None:
    """Signed by the trusted IdP's own key, so every claim is read: a required claim missing or of the wrong JSON
    type is invalid_grant; an optional one of the wrong type is refused or ignored; nothing crashes or logs a
    traceback."""
    genuine = {**idp.claims(agent.row.id), "acr": "mfa", "amr": ["pwd"], "auth_time": int(time.time()),
               "tenant": "t1", "name": "Alice"}
    problems, tried = [], 0
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url=ISSUER) as raw:
        for name, case, variant in wrong_claims(genuine, out_of_range=True):
            fresh = variant if name == "jti" else {**variant, "jti": uuid.uuid4().hex}
            assertion = signed(fresh, idp.ec_key, "ES256", {"kid": "ec-1", "typ": ID_JAG_TYP})
            with watched_logs() as seen:
                response = await redeem(raw, agent, assertion)
            tried += 1
            problem = verdict(response.status_code, seen)
            if problem or (name in REQUIRED and response.status_code < 400):
                problems.append(f"{name} {case}: {response.status_code} {response.text[:100]} {problem or ''}")
    assert tried > 150 and not problems, "\n".join(problems[:30])


async def test_a_jti_is_good_once_across_instances(client, state, idp, agent, alice, settings, loopback) -> None:
    from broker.app import build_state
    from broker.web import create_app

    assertion = idp.assertion(agent.row.id)
    assert (await redeem(client, agent, assertion)).status_code == 200
    again = await redeem(client, agent, assertion)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert "already used" in again.json()["error_description"]
    other_state = build_state(settings, http=httpx.AsyncClient(transport=loopback))
    try:
        transport = httpx.ASGITransport(app=create_app(other_state))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as other:
            fresh = idp.assertion(agent.row.id)
            assert (await redeem(other, agent, fresh)).status_code == 200  # the second instance works...
            replay = await redeem(client, agent, fresh)  # ...and the first knows that jti was used there
            assert replay.json()["error"] == "invalid_grant"
    finally:
        other_state.database.dispose()


async def test_offboarding_ends_tokens_already_issued_from_id_jags(client, state, idp, agent, alice) -> None:
    token = (await redeem(client, agent, idp.assertion(agent.row.id))).json()["access_token"]
    server = register_client(state, auth_method="client_secret_basic", redirect_uris=[], grant_types=(),
                             may_introspect=True)

    async def introspect() -> dict:
        response = await client.post("/introspect", data={"token": token}, auth=(server.row.id, server.secret))
        return response.json()

    assert (await introspect())["active"] is True
    with state.database.transaction() as session:
        offboarding.revoke_user(session, alice, reason="left", actor="test", now=utcnow())
    assert await introspect() == {"active": False}  # at once, though the token has no refresh-token family


async def test_offboarded_users_get_nothing(client, state, idp, agent, alice) -> None:
    with state.database.transaction() as session:
        offboarding.revoke_user(session, alice, reason="left", actor="test", now=utcnow())
    response = await redeem(client, agent, idp.assertion(agent.row.id))
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert rejections(state)[-1]["reason"] == "the user may no longer sign in"


async def test_request_errors(client, state, idp, agent, alice) -> None:
    missing = await client.post("/token", data={"grant_type": JWT_BEARER}, auth=(agent.row.id, agent.secret))
    assert missing.json()["error"] == "invalid_request"
    no_resource = await redeem(client, agent, idp.assertion(agent.row.id, resource=None))
    assert no_resource.json()["error"] == "invalid_target"
    unknown = await redeem(client, agent, idp.assertion(agent.row.id, resource=None),
                           resource="https://unknown.example/mcp")
    assert unknown.json()["error"] == "invalid_target"
    differs = await redeem(client, agent, idp.assertion(agent.row.id), resource="https://unknown.example/mcp")
    assert differs.json()["error"] == "invalid_target"
    bad_scope = await redeem(client, agent, idp.assertion(agent.row.id), scope="admin:write")
    assert bad_scope.json()["error"] == "invalid_scope"


async def test_only_confidential_clients_registered_for_the_grant(client, state, idp, alice) -> None:
    public = register_client(state)
    refused = await client.post("/token", data={**grant_form(idp.assertion(public.row.id)), "client_id": public.row.id})
    assert refused.status_code in (400, 401) and refused.json()["error"] in ("invalid_client", "unauthorized_client")
    other = register_client(state, auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",))
    unregistered = await redeem(client, other, idp.assertion(other.row.id))
    assert unregistered.json()["error"] == "unauthorized_client"


async def test_an_agent_registered_for_client_secret_post_redeems_with_its_secret_in_the_body(client, state, idp,
                                                                                               alice) -> None:
    """The MCP SDK's IdentityAssertionOAuthProvider and MCP Inspector send the secret in the body; an agent
    registered so is refused over Basic, and the refusal names the method the request used."""
    agent = register_client(state, name="Agent", auth_method="client_secret_post", redirect_uris=[],
                            grant_types=(JWT_BEARER,))
    as_basic = await redeem(client, agent, idp.assertion(agent.row.id))
    assert as_basic.status_code == 401 and as_basic.json() == {
        "error": "invalid_client",
        "error_description": "the client is registered for client_secret_post; the request used client_secret_basic"}
    posted = await client.post("/token", data={**grant_form(idp.assertion(agent.row.id)), "client_id": agent.row.id,
                                               "client_secret": agent.secret})
    assert posted.status_code == 200 and posted.json()["token_type"] == "Bearer", posted.text


async def test_unreachable_idp_keys_are_a_503_not_a_grant(client, state, idp, agent, alice) -> None:
    idp.down = True
    response = await redeem(client, agent, idp.assertion(agent.row.id))
    assert response.status_code == 503 and response.json()["error"] == "temporarily_unavailable"
    idp.down = False
    await_later = await redeem(client, agent, idp.assertion(agent.row.id, kid="ec-1"))
    assert await_later.status_code in (200, 400)  # the failed fetch is not cached; a refetch may be rate-limited


async def test_keys_are_cached(client, state, idp, agent, alice) -> None:
    for _ in range(3):
        assert (await redeem(client, agent, idp.assertion(agent.row.id))).status_code == 200
    assert idp.served == 1


@pytest.mark.parametrize("overrides,expected", [
    ({"link_by_email": True}, 200),  # carol's groups come with her
    ({"provision_users": True}, 400),  # a new user, in no group yet: the dev policy denies
    ({}, 400),
])
async def test_first_sight_of_a_subject(client, state, idp, agent, loopback, overrides,
                                        expected) -> None:
    from broker.app import build_state
    from broker.web import create_app

    carol = sign_in(state, "carol-at-test", ("engineering",))
    with state.database.transaction() as session:
        session.get(User, carol).email = "carol@example.com"
    configured = trusting(state.settings, idp=None, **overrides)
    other_state = build_state(configured, http=httpx.AsyncClient(transport=loopback))
    try:
        transport = httpx.ASGITransport(app=create_app(other_state))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as other:
            response = await redeem(other, agent, idp.assertion(agent.row.id, sub="c-123", email="carol@example.com"))
    finally:
        other_state.database.dispose()
    assert response.status_code == expected, response.text
    with state.database.sessions() as session:
        linked = session.scalar(select(UpstreamIdentity).where(UpstreamIdentity.idp_id == "acme"))
    if overrides.get("link_by_email"):
        assert linked is not None and linked.user_id == carol
    elif overrides.get("provision_users"):
        assert linked is not None and linked.user_id != carol
    else:
        assert linked is None


async def test_unverified_email_never_links(client, state, idp, agent, loopback) -> None:
    from broker.app import build_state
    from broker.web import create_app

    sign_in(state, "dave", ("engineering",))
    configured = trusting(state.settings, idp=None, link_by_email=True)
    other_state = build_state(configured, http=httpx.AsyncClient(transport=loopback))
    try:
        transport = httpx.ASGITransport(app=create_app(other_state))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as other:
            response = await redeem(other, agent, idp.assertion(agent.row.id, sub="d-1", email="dave@example.com",
                                                                email_verified=False))
    finally:
        other_state.database.dispose()
    assert response.json()["error"] == "invalid_grant"


async def test_metadata_says_id_jags_are_accepted_but_not_from_whom(client) -> None:
    document = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert document["authorization_grant_profiles_supported"] == ["urn:ietf:params:oauth:grant-profile:id-jag"]
    assert JWT_BEARER in document["grant_types_supported"]
    assert IDP_ISSUER not in str(document) and "acme" not in str(document)


async def test_without_trusted_issuers_the_grant_does_not_exist(state, loopback) -> None:
    from broker.app import build_state
    from broker.config import IdJagSettings
    from broker.web import create_app

    plain = build_state(state.settings.model_copy(update={"id_jag": IdJagSettings()}),
                        http=httpx.AsyncClient(transport=loopback))
    try:
        transport = httpx.ASGITransport(app=create_app(plain))
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            document = (await http.get("/.well-known/oauth-authorization-server")).json()
            assert "authorization_grant_profiles_supported" not in document
            with plain.database.transaction() as session:
                from broker.oauth import clients

                agent = clients.register(session, name="a", kind="preregistered", auth=clients.BASIC_AUTH,
                                         grant_types=[JWT_BEARER])
            response = await http.post("/token", data=grant_form(FakeIdp().assertion(agent.row.id)),
                                       auth=(agent.row.id, agent.secret))
            assert response.json()["error"] == "unsupported_grant_type"
    finally:
        plain.database.dispose()
