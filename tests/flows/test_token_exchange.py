"""Token exchange into ID-JAGs (RFC 8693): the broker as the enterprise IdP (issue 8, IdP side).

A client signs its user in here (OpenID Connect), then exchanges the ID token (or its refresh
token) for an ID-JAG for a partner authorization server that serves the demo MCP server.
"""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select

from broker.lifecycle import offboarding
from broker.oauth import clients
from broker.storage.models import AuditEvent, utcnow
from tests.conftest import ISSUER
from tests.support.hostile import signed, verdict, watched_logs, wrong_claims
from tests.support.id_jag import ID_JAG_TYP, JWT_BEARER, FakeIdp, grant_form, trusted_issuer
from tests.support.oauth_flow import DEMO_RESOURCE, authorize, exchange, pkce

PARTNER = "https://partner-as.example"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_JAG = "urn:ietf:params:oauth:token-type:id-jag"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
REFRESH_TOKEN = "urn:ietf:params:oauth:token-type:refresh_token"
AGENT = "agent-desktop"


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(id_jag={"audiences": [{"issuer": PARTNER, "resources": [DEMO_RESOURCE],
                                                "clients": {AGENT: "remote-agent", "other-agent": "remote-other"}}],
                                 "trusted_issuers": [trusted_issuer()]})


@pytest.fixture
def agent(state: Any) -> Any:
    with state.database.transaction() as session:
        return clients.register(session, client_id=AGENT, name="Agent desktop", kind="preregistered",
                                auth=clients.BASIC_AUTH, redirect_uris=["http://127.0.0.1:9999/cb"],
                                grant_types=["authorization_code", "refresh_token", EXCHANGE, JWT_BEARER],
                                trusted=True)


async def sign_in(client: httpx.AsyncClient, agent: Any, username: str = "alice") -> dict[str, Any]:
    """OIDC sign-in without an MCP server: ID token and refresh token."""
    verifier, challenge = pkce()
    redirect = await authorize(client, agent.row.id, challenge, username=username, resource=None,
                               scope="openid email offline_access", redirect_uri="http://127.0.0.1:9999/cb")
    assert "code" in redirect, redirect
    response = await exchange(client, agent.row.id, redirect["code"], verifier, secret=agent.secret, resource=None,
                              redirect_uri="http://127.0.0.1:9999/cb")
    assert response.status_code == 200, response.text
    body = response.json()
    assert "id_token" in body and "refresh_token" in body
    return body


async def swap(client: httpx.AsyncClient, agent: Any, subject_token: str, /, *, token_type: str = ID_TOKEN,
               **overrides: str | None) -> httpx.Response:
    data = {"grant_type": EXCHANGE, "requested_token_type": ID_JAG, "subject_token": subject_token or None,
            "subject_token_type": token_type, "audience": PARTNER, "resource": DEMO_RESOURCE, "scope": "tools:read"}
    data.update(overrides)  # type: ignore[arg-type]
    if overrides.get("subject_token") == "":
        data["subject_token"] = None
    return await client.post("/token", data={k: v for k, v in data.items() if v is not None},
                             auth=(agent.row.id, agent.secret))


def verified(client_state: Any, assertion: str) -> dict[str, Any]:
    with client_state.database.sessions() as session:
        keys = {k["kid"]: k for k in client_state.keyring.jwks(session)["keys"]}
    header = jwt.get_unverified_header(assertion)
    assert header["typ"] == ID_JAG_TYP
    key = jwt.PyJWK(keys[header["kid"]])
    return jwt.decode(assertion, key.key, algorithms=[header["alg"]], audience=PARTNER, issuer=ISSUER)


async def test_an_id_token_becomes_an_id_jag_for_the_partner(client, state, agent) -> None:
    tokens = await sign_in(client, agent)
    response = await swap(client, agent, tokens["id_token"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == ID_JAG and body["token_type"] == "N_A"
    assert body["expires_in"] == 300 and body["scope"] == "tools:read" and "refresh_token" not in body
    assert response.headers["cache-control"] == "no-store"
    claims = verified(state, body["access_token"])
    user_id = jwt.decode(tokens["id_token"], options={"verify_signature": False})["sub"]
    assert claims["sub"] == user_id and claims["client_id"] == "remote-agent"
    assert claims["resource"] == DEMO_RESOURCE and claims["scope"] == "tools:read"
    assert claims["exp"] - claims["iat"] == 300 and claims["email"] == "alice@example.com"
    assert claims["email_verified"] is True and isinstance(claims["auth_time"], int)
    with state.database.sessions() as session:
        event = session.scalar(select(AuditEvent).where(AuditEvent.event_type == "id_jag.issued"))
    assert event.data["audience"] == PARTNER and event.data["jti"] == claims["jti"]
    assert body["access_token"] not in str(event.data)


async def test_a_refresh_token_is_a_subject_token_too_and_is_not_rotated(client, state, agent) -> None:
    tokens = await sign_in(client, agent)
    first = await swap(client, agent, tokens["refresh_token"], token_type=REFRESH_TOKEN)
    second = await swap(client, agent, tokens["refresh_token"], token_type=REFRESH_TOKEN)
    assert first.status_code == 200 and second.status_code == 200, second.text
    assert verified(state, first.json()["access_token"])["jti"] != verified(state, second.json()["access_token"])["jti"]


async def test_policy_denies_at_the_idp_side(client, state, agent) -> None:
    tokens = await sign_in(client, agent, username="bob")  # sales: the dev policy gives bob nothing
    response = await swap(client, agent, tokens["id_token"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    with state.database.sessions() as session:
        events = [e.event_type for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert "authorization.denied" in events and "id_jag.issued" not in events


async def test_offboarding_ends_the_exchange(client, state, agent) -> None:
    tokens = await sign_in(client, agent)
    user_id = jwt.decode(tokens["id_token"], options={"verify_signature": False})["sub"]
    with state.database.transaction() as session:
        offboarding.revoke_user(session, user_id, reason="left", actor="test", now=utcnow())
    for subject, kind in ((tokens["id_token"], ID_TOKEN), (tokens["refresh_token"], REFRESH_TOKEN)):
        response = await swap(client, agent, subject, token_type=kind)
        assert response.status_code == 400 and response.json()["error"] == "invalid_grant", response.text


async def test_step_up_when_a_stronger_sign_in_would_be_allowed(client, state, agent) -> None:
    from broker.registry import policies

    rule = ('[[rules]]\nid = "demo-mfa"\neffect = "allow"\nscopes = "*"\n\n[rules.subjects]\ngroups = ["engineering"]\n'
            '\n[rules.targets]\nservers = ["demo"]\n\n[rules.conditions]\nacr = ["urn:acme:mfa"]\n')
    with state.database.transaction() as session:
        policies.import_policy(session, rule, issuer=ISSUER, author="test")
    tokens = await sign_in(client, agent)
    response = await swap(client, agent, tokens["id_token"])
    assert response.status_code == 400 and response.json()["error"] == "insufficient_user_authentication"


@pytest.mark.parametrize("change,error", [
    ({"requested_token_type": "urn:ietf:params:oauth:token-type:access_token"}, "invalid_request"),
    ({"requested_token_type": None}, "invalid_request"),
    ({"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"}, "unsupported_token_type"),
    ({"subject_token": ""}, "invalid_request"),
    ({"actor_token": "x", "actor_token_type": ID_TOKEN}, "invalid_request"),
    ({"audience": None}, "invalid_request"),
    ({"audience": "https://unknown-as.example"}, "invalid_target"),
    ({"audience": ISSUER}, "invalid_target"),  # never an ID-JAG for itself
    ({"resource": None}, "invalid_target"),
    ({"resource": "https://unknown.example/mcp"}, "invalid_target"),
    ({"resource": "not a uri"}, "invalid_target"),
    ({"scope": "admin:write"}, "invalid_scope"),
    ({"subject_token": "not-a-token"}, "invalid_grant"),
])
async def test_bad_exchange_requests(client, state, agent, change, error) -> None:
    tokens = await sign_in(client, agent)
    response = await swap(client, agent, tokens["id_token"], **change)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error, response.json()
    with state.database.sessions() as session:
        assert session.scalar(select(AuditEvent).where(AuditEvent.event_type == "id_jag.issued")) is None


async def test_subject_tokens_must_be_the_callers_own_id_tokens(client, state, agent) -> None:
    tokens = await sign_in(client, agent)
    with state.database.transaction() as session:
        other = clients.register(session, client_id="other-agent", name="Other", kind="preregistered",
                                 auth=clients.BASIC_AUTH, redirect_uris=[], grant_types=[EXCHANGE])
    stolen = await swap(client, other, tokens["id_token"])  # issued to agent-desktop, presented by another
    assert stolen.json()["error"] == "invalid_grant"
    as_access_token = await swap(client, agent, tokens["access_token"])  # at+jwt is not an ID token
    assert as_access_token.json()["error"] == "invalid_grant"
    foreign = await swap(client, agent, FakeIdp().assertion(AGENT, typ="JWT"))
    assert foreign.json()["error"] == "invalid_grant"
    refresh_of_another = await swap(client, other, tokens["refresh_token"], token_type=REFRESH_TOKEN)
    assert refresh_of_another.json()["error"] == "invalid_grant"


async def test_unmapped_clients_and_unregistered_grants(client, state, agent) -> None:
    tokens = await sign_in(client, agent)
    with state.database.transaction() as session:
        unmapped = clients.register(session, client_id="unmapped", name="U", kind="preregistered",
                                    auth=clients.BASIC_AUTH, redirect_uris=[], grant_types=[EXCHANGE])
        plain = clients.register(session, client_id="plain", name="P", kind="preregistered",
                                 auth=clients.BASIC_AUTH, redirect_uris=[],
                                 grant_types=["client_credentials"])
    assert (await swap(client, unmapped, tokens["id_token"])).json()["error"] == "invalid_target"
    assert (await swap(client, plain, tokens["id_token"])).json()["error"] == "unauthorized_client"
    anonymous = await client.post("/token", data={"grant_type": EXCHANGE, "client_id": AGENT})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"


async def test_a_client_secret_post_client_exchanges_with_its_secret_in_the_body(client, state) -> None:
    """MCP Inspector's Enterprise-Managed flow authenticates with client_secret_post at every step: the sign-in's
    code, then the exchange; the client's Basic attempt is refused naming the method it used."""
    with state.database.transaction() as session:
        app = clients.register(session, client_id="other-agent", name="Inspector", kind="preregistered",
                               auth=clients.auth_setup(["client_secret_post"]), trusted=True,
                               redirect_uris=["http://127.0.0.1:9999/cb"], grant_types=["authorization_code", EXCHANGE])
    verifier, challenge = pkce()
    redirect = await authorize(client, app.row.id, challenge, resource=None, scope="openid email",
                               redirect_uri="http://127.0.0.1:9999/cb")
    signed_in = await exchange(client, app.row.id, redirect["code"], verifier, resource=None,
                               redirect_uri="http://127.0.0.1:9999/cb", client_secret=app.secret)
    assert signed_in.status_code == 200, signed_in.text
    form = {"grant_type": EXCHANGE, "requested_token_type": ID_JAG, "subject_token": signed_in.json()["id_token"],
            "subject_token_type": ID_TOKEN, "audience": PARTNER, "resource": DEMO_RESOURCE, "scope": "tools:read"}
    as_basic = await client.post("/token", data=form, auth=(app.row.id, app.secret))
    assert as_basic.status_code == 401 and as_basic.json() == {
        "error": "invalid_client",
        "error_description": "the client is registered for client_secret_post; the request used client_secret_basic"}
    posted = await client.post("/token", data={**form, "client_id": app.row.id, "client_secret": app.secret})
    assert posted.status_code == 200 and posted.json()["issued_token_type"] == ID_JAG, posted.text
    assert verified(state, posted.json()["access_token"])["client_id"] == "remote-other"


async def test_the_broker_never_redeems_its_own_id_jags(client, state, agent, loopback) -> None:
    FakeIdp().install(loopback)
    tokens = await sign_in(client, agent)
    own = (await swap(client, agent, tokens["id_token"])).json()["access_token"]
    response = await client.post("/token", data=grant_form(own), auth=(agent.row.id, agent.secret))
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert "issued itself" in response.json()["error_description"] or "issued" in response.json()["error_description"]


async def test_metadata_advertises_issuing_id_jags(client) -> None:
    document = (await client.get("/.well-known/openid-configuration")).json()
    assert document["identity_chaining_requested_token_types_supported"] == [ID_JAG]
    assert EXCHANGE in document["grant_types_supported"]
    assert PARTNER not in str(document)


async def test_an_id_token_with_any_claim_of_the_wrong_type_is_refused_cleanly(app, client, state, agent) -> None:
    """Subject tokens signed with the broker's own key, so every claim is read: one of the wrong JSON type, or a
    required one missing, is invalid_grant (an optional one of the wrong type is ignored); never a crash or a
    traceback."""
    tokens = await sign_in(client, agent)
    genuine = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    with state.database.sessions() as session:
        key = state.keyring.active(session)
    problems, tried = [], 0
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url=ISSUER) as raw:
        for name, case, variant in wrong_claims(genuine):
            token = signed(variant, key.private_key, key.algorithm, {"kid": key.kid, "typ": "JWT"})
            with watched_logs() as seen:
                response = await swap(raw, agent, token)
            tried += 1
            problem = verdict(response.status_code, seen)
            if problem or (name in ("iss", "sub", "aud", "exp", "iat") and response.status_code < 400):
                problems.append(f"{name} {case}: {response.status_code} {response.text[:100]} {problem or ''}")
    assert tried > 100 and not problems, "\n".join(problems[:30])
