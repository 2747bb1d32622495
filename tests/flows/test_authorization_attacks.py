"""Attacks on the authorization flow: each gets the exact error, and nothing is issued."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import func, select

from broker.storage.models import AuditEvent, AuthorizationCode, RefreshTokenFamily
from tests.conftest import ISSUER
from tests.support.oauth_flow import (
    CLIENT_REDIRECT,
    authorize,
    authorize_params,
    exchange,
    pkce,
    query,
    refresh,
    register_client,
    tokens_for,
)


def count(state, model) -> int:
    with state.database.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


async def start(http: httpx.AsyncClient, client_id: str, challenge: str = "x" * 43, **overrides) -> httpx.Response:
    return await http.get("/authorize?" + urlencode(authorize_params(client_id, challenge, **overrides)))


def redirected_error(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(CLIENT_REDIRECT + "?")
    params = query(location)
    assert params["iss"] == ISSUER  # RFC 9207: iss on error responses too
    return params


# ---------------------------------------------------------------- PKCE


async def test_missing_pkce_is_refused(client, state) -> None:
    new = register_client(state)
    params = redirected_error(await start(client, new.row.id, code_challenge=None, code_challenge_method=None))
    assert (params["error"], params["state"]) == ("invalid_request", "client-state-1")
    assert "code_challenge is required" in params["error_description"]


async def test_plain_pkce_is_refused(client, state) -> None:
    new = register_client(state)
    params = redirected_error(await start(client, new.row.id, code_challenge_method="plain"))
    assert params["error"] == "invalid_request" and "S256" in params["error_description"]


async def test_pkce_without_method_is_refused_as_plain(client, state) -> None:
    new = register_client(state)
    params = redirected_error(await start(client, new.row.id, code_challenge_method=None))
    assert params["error"] == "invalid_request"


async def test_verifier_without_challenge_downgrade_is_refused(client, state) -> None:
    """An attacker strips code_challenge; the AS refuses at once, so no code exists to redeem."""
    new = register_client(state)
    params = redirected_error(await start(client, new.row.id, code_challenge=None, code_challenge_method=None))
    assert params["error"] == "invalid_request" and count(state, AuthorizationCode) == 0


async def test_wrong_verifier_is_invalid_grant_and_burns_the_code(client, state) -> None:
    new = register_client(state)
    verifier, challenge = pkce()
    code = (await authorize(client, new.row.id, challenge))["code"]
    wrong = await exchange(client, new.row.id, code, pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    again = await exchange(client, new.row.id, code, verifier)
    assert again.json()["error"] == "invalid_grant"
    assert count(state, RefreshTokenFamily) == 0


@pytest.mark.parametrize("resource", [None, "not a uri", "https://other.example/mcp"],
                         ids=["missing", "malformed", "another"])
async def test_a_failed_redemption_burns_the_code_whatever_the_resource(client, state, resource) -> None:
    """docs/security.md §4.4: a failed redemption burns the code, a missing or malformed resource included."""
    new = register_client(state)
    verifier, challenge = pkce()
    code = (await authorize(client, new.row.id, challenge))["code"]
    refused = await exchange(client, new.row.id, code, verifier, resource=resource)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_target"
    again = await exchange(client, new.row.id, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert count(state, RefreshTokenFamily) == 0


async def test_missing_verifier_is_invalid_request(client, state) -> None:
    new = register_client(state)
    _, challenge = pkce()
    code = (await authorize(client, new.row.id, challenge))["code"]
    response = await exchange(client, new.row.id, code, None)
    assert response.json()["error"] == "invalid_request" and count(state, RefreshTokenFamily) == 0


# ---------------------------------------------------------------- redirect URIs


@pytest.mark.parametrize("redirect_uri", [
    "https://evil.example/callback",                 # another host
    "http://127.0.0.1:9999/callback/../evil",        # path games
    "http://127.0.0.1:9999/callbackx",               # prefix match
    "http://127.0.0.1:9999/callback?next=https://evil.example",
    "http://localhost:9999/callback",                # another loopback spelling
    "http://127.0.0.1:9999/Callback",
])
async def test_unregistered_redirect_uri_is_a_page_never_a_redirect(client, state, redirect_uri: str) -> None:
    new = register_client(state)
    response = await start(client, new.row.id, redirect_uri=redirect_uri)
    assert response.status_code == 400 and "location" not in response.headers
    assert "Invalid redirect" in response.text and "evil" not in response.headers.get("location", "")


async def test_loopback_redirect_may_change_only_its_port(client, state) -> None:
    new = register_client(state)
    _, challenge = pkce()
    ok = await authorize(client, new.row.id, challenge, redirect_uri="http://127.0.0.1:51234/callback")
    assert ok["location"].startswith("http://127.0.0.1:51234/callback?") and "code" in ok


async def test_unknown_client_is_a_page(client, state) -> None:
    response = await start(client, "mcp_nobody")
    assert response.status_code == 400 and "Unknown application" in response.text and "location" not in response.headers


async def test_errors_before_redirect_validation_are_pages(client, state) -> None:
    new = register_client(state)
    response = await client.get("/authorize?" + urlencode([("client_id", new.row.id), ("redirect_uri", CLIENT_REDIRECT),
                                                           ("redirect_uri", "https://evil.example/cb")]))
    assert response.status_code == 400 and "location" not in response.headers


# ---------------------------------------------------------------- codes


async def test_code_replay_revokes_what_it_produced(client, state) -> None:
    new = register_client(state)
    verifier, challenge = pkce()
    code = (await authorize(client, new.row.id, challenge))["code"]
    first = await exchange(client, new.row.id, code, verifier)
    assert first.status_code == 200
    replay = await exchange(client, new.row.id, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    after = await refresh(client, new.row.id, first.json()["refresh_token"])
    assert after.json()["error"] == "invalid_grant"  # the family the code produced is revoked


async def test_code_of_client_a_redeemed_by_client_b(client, state) -> None:
    a, b = register_client(state, name="A"), register_client(state, name="B")
    verifier, challenge = pkce()
    code = (await authorize(client, a.row.id, challenge))["code"]
    stolen = await exchange(client, b.row.id, code, verifier)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    assert count(state, RefreshTokenFamily) == 0


async def test_redirect_uri_must_match_at_the_token_endpoint(client, state) -> None:
    new = register_client(state)
    verifier, challenge = pkce()
    code = (await authorize(client, new.row.id, challenge))["code"]
    response = await exchange(client, new.row.id, code, verifier, redirect_uri="http://127.0.0.1:9999/other")
    assert response.json()["error"] == "invalid_grant" and count(state, RefreshTokenFamily) == 0


# ---------------------------------------------------------------- resource


async def test_resource_mismatch_between_authorize_and_token(client, state) -> None:
    new = register_client(state)
    verifier, challenge = pkce()
    code = (await authorize(client, new.row.id, challenge))["code"]
    response = await exchange(client, new.row.id, code, verifier, resource="https://other.example/mcp")
    assert response.json()["error"] == "invalid_target" and count(state, RefreshTokenFamily) == 0


async def test_resource_is_required_at_the_token_endpoint(client, state) -> None:
    new = register_client(state)
    verifier, challenge = pkce()
    code = (await authorize(client, new.row.id, challenge))["code"]
    response = await exchange(client, new.row.id, code, verifier, resource=None)
    assert response.json()["error"] == "invalid_target"


@pytest.mark.parametrize("resource", [None, "https://unknown.example/mcp", "not a uri", f"{ISSUER}/demo/mcp#frag"])
async def test_unknown_or_missing_resource_at_authorize(client, state, resource) -> None:
    new = register_client(state)
    params = redirected_error(await start(client, new.row.id, resource=resource))
    assert params["error"] == "invalid_target"


@pytest.mark.parametrize("spelling", [f"{ISSUER}/demo/mcp/", "HTTP://127.0.0.1:8000/demo/mcp",
                                      "http://127.0.0.1:8000/demo/mcp"])
async def test_resource_is_canonicalised(client, state, spelling) -> None:
    new = register_client(state)
    verifier, challenge = pkce()
    redirect = await authorize(client, new.row.id, challenge, resource=spelling)
    response = await exchange(client, new.row.id, redirect["code"], verifier, resource=spelling)
    assert response.status_code == 200, response.text


async def test_two_resources_are_refused(client, state) -> None:
    new = register_client(state)
    params = authorize_params(new.row.id, "x" * 43)
    pairs = [*params.items(), ("resource", "https://other.example/mcp")]
    params = redirected_error(await client.get("/authorize?" + urlencode(pairs)))
    assert params["error"] == "invalid_target"


async def test_unknown_scope_is_invalid_scope(client, state) -> None:
    new = register_client(state)
    params = redirected_error(await start(client, new.row.id, scope="tools:read admin:everything"))
    assert params["error"] == "invalid_scope"


async def test_response_type_token_is_refused(client, state) -> None:
    new = register_client(state)
    params = redirected_error(await start(client, new.row.id, response_type="token"))
    assert params["error"] == "unsupported_response_type"


async def test_duplicated_parameter_is_invalid_request(client, state) -> None:
    new = register_client(state)
    pairs = [*authorize_params(new.row.id, "x" * 43).items(), ("scope", "tools:read"), ("scope", "tools:call")]
    params = redirected_error(await client.get("/authorize?" + urlencode(pairs)))
    assert params["error"] == "invalid_request"


# ---------------------------------------------------------------- refresh tokens


async def test_refresh_reuse_revokes_the_family(client, state) -> None:
    new = register_client(state)
    body = await tokens_for(client, new.row.id)
    first = await refresh(client, new.row.id, body["refresh_token"])
    assert first.status_code == 200
    reuse = await refresh(client, new.row.id, body["refresh_token"])
    assert reuse.json()["error"] == "invalid_grant"
    current = await refresh(client, new.row.id, first.json()["refresh_token"])
    assert current.json()["error"] == "invalid_grant"  # the legitimate holder is cut off too


async def test_refresh_token_is_bound_to_its_client(client, state) -> None:
    a, b = register_client(state, name="A"), register_client(state, name="B")
    body = await tokens_for(client, a.row.id)
    response = await refresh(client, b.row.id, body["refresh_token"])
    assert response.json()["error"] == "invalid_grant"


async def test_refresh_cannot_widen_scope_or_change_resource(client, state) -> None:
    new = register_client(state)
    body = await tokens_for(client, new.row.id)
    narrowed = await refresh(client, new.row.id, body["refresh_token"], scope="tools:read")
    assert narrowed.json()["scope"] == "tools:read"
    wider = await refresh(client, new.row.id, narrowed.json()["refresh_token"], scope="tools:read tools:call")
    assert wider.json()["error"] == "invalid_scope"
    other = await refresh(client, new.row.id, narrowed.json()["refresh_token"], resource="https://other.example")
    assert other.json()["error"] == "invalid_target"


REFUSED_REFRESHES = {
    "a wider scope": ({"scope": "tools:read tools:call admin:read"}, "invalid_scope"),
    "a scope the server lacks": ({"scope": "tools:read nonsense"}, "invalid_scope"),
    "another registered server": ({"resource": "https://crm.example.com/mcp"}, "invalid_target"),
    "an unregistered resource": ({"resource": "https://other.example/mcp"}, "invalid_target"),
    "a malformed resource": ({"resource": "not a uri"}, "invalid_target"),
}


@pytest.mark.parametrize(("extra", "error"), REFUSED_REFRESHES.values(), ids=REFUSED_REFRESHES.keys())
async def test_a_refused_refresh_changes_nothing(client, state, extra, error) -> None:
    """RFC 6749 §5.2: an error changes nothing. The refresh token is checked before it is spent, so the client's
    next correct refresh works, and nothing is revoked or audited as reuse."""
    from broker.registry import admin as registry_admin

    with state.database.transaction() as session:
        registry_admin.add(session, registry_admin.ServerSpec(id="crm", name="CRM", resource="https://crm.example.com/mcp",
                                                              scopes={"crm:read": "Read"}, default_scopes=["crm:read"]))
    new = register_client(state)
    body = await tokens_for(client, new.row.id)
    narrowed = await refresh(client, new.row.id, body["refresh_token"], scope="tools:read")
    assert narrowed.status_code == 200, narrowed.text
    refused = await refresh(client, new.row.id, narrowed.json()["refresh_token"], **extra)
    assert refused.status_code == 400 and refused.json()["error"] == error, refused.text
    again = await refresh(client, new.row.id, narrowed.json()["refresh_token"])
    assert again.status_code == 200, again.text
    assert again.json()["scope"] == "tools:read"
    with state.database.sessions() as session:
        assert not session.scalars(select(AuditEvent).where(
            AuditEvent.event_type == "refresh_token.reuse_detected")).all()


async def test_a_policy_refusal_at_refresh_leaves_the_token_for_when_access_returns(client, state) -> None:
    """Policy says no today (the user left the group): invalid_grant, and the refresh token is not spent, so it
    works again once policy allows."""
    from broker.storage import users as user_repo
    from broker.storage.models import User

    new = register_client(state)
    body = await tokens_for(client, new.row.id)
    with state.database.transaction() as session:
        alice = session.scalars(select(User).where(User.email == "alice@example.com")).one()
        user_repo.set_groups(session, alice.id, "idp:test", [])
    refused = await refresh(client, new.row.id, body["refresh_token"])
    assert refused.json()["error"] == "invalid_grant"
    with state.database.transaction() as session:
        user_repo.set_groups(session, alice.id, "idp:test", ["engineering"])
    assert (await refresh(client, new.row.id, body["refresh_token"])).status_code == 200


async def test_offboarded_user_cannot_refresh(client, state) -> None:
    from broker.storage.models import User

    new = register_client(state)
    body = await tokens_for(client, new.row.id)
    with state.database.transaction() as session:
        for user in session.scalars(select(User)):
            user.status = "offboarded"
    response = await refresh(client, new.row.id, body["refresh_token"])
    assert response.json()["error"] == "invalid_grant"


async def test_disabled_server_stops_refresh(client, state) -> None:
    from broker.storage.models import McpServer

    new = register_client(state)
    body = await tokens_for(client, new.row.id)
    with state.database.transaction() as session:
        session.get(McpServer, "demo").enabled = False
    response = await refresh(client, new.row.id, body["refresh_token"])
    assert response.json()["error"] == "invalid_grant"


# ---------------------------------------------------------------- browser binding


async def test_callback_in_another_browser_is_refused(app, state) -> None:
    """Login CSRF: a callback URL replayed in a browser without the binding cookie does nothing."""
    new = register_client(state)
    _, challenge = pkce()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as victim, \
            httpx.AsyncClient(transport=transport, base_url=ISSUER) as attacker:
        from tests.support.oauth_flow import local, sign_in_upstream
        started = await attacker.get("/authorize?" + urlencode(authorize_params(new.row.id, challenge)))
        callback = await sign_in_upstream(attacker, started.headers["location"], "bob")
        response = await victim.get(local(callback.headers["location"]))
    assert response.status_code == 403 and "location" not in response.headers


# ---------------------------------------------------------------- the upstream IdP misbehaves


async def test_upstream_error_reaches_the_client_as_access_denied(client, state) -> None:
    new = register_client(state)
    _, challenge = pkce()
    started = await client.get("/authorize?" + urlencode(authorize_params(new.row.id, challenge)))
    upstream_state = query(started.headers["location"])["state"]
    response = await client.get("/callback/test?" + urlencode({"error": "access_denied", "state": upstream_state,
                                                               "iss": f"{ISSUER}/testidp"}))
    params = redirected_error(response)
    assert params["error"] == "access_denied" and params["state"] == "client-state-1"
    assert count(state, AuthorizationCode) == 0


async def test_upstream_outage_is_temporarily_unavailable(client, state) -> None:
    from broker.federation.errors import UpstreamUnavailable

    class UnreachableIdp:
        idp_id, display_name = "test", "Down"

        async def authorization_url(self, **kwargs):
            raise UpstreamUnavailable("connection refused")

    state.oauth.connectors = {"test": UnreachableIdp()}
    new = register_client(state)
    params = redirected_error(await start(client, new.row.id))
    assert params["error"] == "temporarily_unavailable" and params["state"] == "client-state-1"


async def test_callback_replay_is_refused(client, state) -> None:
    from tests.support.oauth_flow import local, sign_in_upstream

    new = register_client(state)
    _, challenge = pkce()
    started = await client.get("/authorize?" + urlencode(authorize_params(new.row.id, challenge)))
    callback = await sign_in_upstream(client, started.headers["location"], "alice")
    first = await client.get(local(callback.headers["location"]))
    assert first.status_code == 302
    again = await client.get(local(callback.headers["location"]))
    assert again.status_code == 400 and "already used" in again.text


async def test_callback_with_unknown_state_is_a_page(client) -> None:
    response = await client.get("/callback/test?code=abc&state=forged")
    assert response.status_code == 400 and "location" not in response.headers


async def test_consent_post_without_csrf_token_is_refused(client, state) -> None:
    from tests.support.oauth_flow import hidden_fields, local, sign_in_upstream

    new = register_client(state)
    _, challenge = pkce()
    started = await client.get("/authorize?" + urlencode(authorize_params(new.row.id, challenge)))
    callback = await sign_in_upstream(client, started.headers["location"], "alice")
    consent_url = (await client.get(local(callback.headers["location"]))).headers["location"]
    page = await client.get(consent_url)
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    fields = hidden_fields(page.text)
    forged = await client.post("/consent", data={"pending": fields["pending"], "decision": "approve",
                                                 "csrf_token": "forged"})
    assert forged.status_code == 403 and count(state, AuthorizationCode) == 0
    real = await client.post("/consent", data={**fields, "decision": "approve"})
    assert real.status_code == 302 and "code=" in real.headers["location"]


async def test_browser_cookie_attributes(client, state) -> None:
    new = register_client(state)
    response = await start(client, new.row.id, code_challenge=pkce()[1])
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    # loopback dev runs on http, where __Host-/Secure cookies cannot be set; https issuers get both


async def test_cors_preflight_on_token_and_discovery(client) -> None:
    for path in ("/token", "/.well-known/oauth-authorization-server", "/register", "/revoke", "/jwks"):
        response = await client.options(path, headers={"origin": "https://app.example",
                                                        "access-control-request-method": "POST"})
        assert response.status_code == 204 and response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in (await client.get("/consent")).headers


@pytest.mark.parametrize("body,content_type", [
    (b"grant_type=authorization_code&grant_type=refresh_token", "application/x-www-form-urlencoded"),
    (b"\xff\xfe\x00", "application/x-www-form-urlencoded"),
    (b"grant_type=%ff", "application/x-www-form-urlencoded"),
    (b'{"grant_type": "client_credentials"}', "application/json"),
    (b"", "application/x-www-form-urlencoded"),
    (b"grant_type=password&username=a&password=b", "application/x-www-form-urlencoded"),
])
async def test_malformed_token_requests_are_oauth_errors(client, state, body, content_type) -> None:
    response = await client.post("/token", content=body, headers={"content-type": content_type})
    assert 400 <= response.status_code < 500
    assert response.json()["error"] in ("invalid_request", "unsupported_grant_type")
    assert response.headers["cache-control"] == "no-store"
    assert count(state, RefreshTokenFamily) == 0


async def test_non_utf8_authorization_request_is_a_page(client, state) -> None:
    response = await client.get("/authorize?client_id=%ff%fe")
    assert response.status_code == 400 and "location" not in response.headers


async def test_an_id_token_failing_any_check_issues_nothing(client, state) -> None:
    """Each ID-token check (aud, nonce, alg, exp, kid, iss) is unit-tested in tests/unit/federation;
    here: whichever fails, the client gets access_denied with iss, and no user, code or token exists."""
    from broker.federation.errors import InvalidIdToken
    from broker.storage.models import User

    real = state.oauth.connectors["test"]

    class ForgedTokens:
        idp_id, display_name = real.idp_id, real.display_name
        authorization_url = real.authorization_url
        check_response_issuer = real.check_response_issuer

        async def complete(self, **kwargs):
            raise InvalidIdToken("the ID token's aud is not this client")

    state.oauth.connectors = {"test": ForgedTokens()}
    new = register_client(state)
    _, challenge = pkce()
    redirect = await authorize(client, new.row.id, challenge)
    assert (redirect["error"], redirect["iss"]) == ("access_denied", ISSUER)
    assert count(state, User) == 0 and count(state, AuthorizationCode) == 0
