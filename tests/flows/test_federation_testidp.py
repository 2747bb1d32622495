"""The generic OIDC connector against the real built-in test IdP, in-process through the ASGI app.

The connector's HTTP client is an ``httpx.AsyncClient`` on the app's ``ASGITransport``, so discovery,
JWKS and the token endpoint are the test IdP's real endpoints (on SQLite and on PostgreSQL). The
test plays the browser: it opens the authorization URL, posts the login form, follows the redirect.
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from broker.config import IdpSettings
from broker.federation import (
    Identity,
    InvalidIdToken,
    IssuerMismatch,
    LoginSecrets,
    OidcConnector,
    UpstreamRejected,
)
from tests.conftest import ISSUER, TEST_USERS, TESTIDP_CLIENT

TESTIDP = f"{ISSUER}/testidp"
REDIRECT_URI = f"{ISSUER}/callback/test"
PASSWORDS = {user["username"]: user["password"] for user in TEST_USERS}
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_ACTION = re.compile(r'<form method="post" action="([^"]+)">')


def make_connector(http: httpx.AsyncClient, **settings: Any) -> OidcConnector:
    idp = IdpSettings(id="test", type="test", issuer=TESTIDP, client_id=TESTIDP_CLIENT["client_id"],
                      client_secret=TESTIDP_CLIENT["client_secret"], **settings)
    return OidcConnector(idp, redirect_uri=REDIRECT_URI, http=http)


async def browser_login(http: httpx.AsyncClient, url: str, username: str) -> dict[str, str]:
    """Open the authorization URL, post the login form, return the callback's query parameters."""
    page = await http.get(url)
    assert page.status_code == 200, page.text
    fields = {name: html.unescape(value) for name, value in _HIDDEN.findall(page.text)}
    [action] = _ACTION.findall(page.text)
    response = await http.post(html.unescape(action),
                               data={**fields, "username": username, "password": PASSWORDS[username]})
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def log_in(connector: OidcConnector, http: httpx.AsyncClient, username: str = "alice",
                 secrets: LoginSecrets | None = None) -> tuple[LoginSecrets, dict[str, str]]:
    secrets = secrets or LoginSecrets.new()
    url = await connector.authorization_url(state=secrets.state, nonce=secrets.nonce,
                                            code_challenge=secrets.code_challenge)
    return secrets, await browser_login(http, url, username)


async def test_alice_logs_in_through_the_test_idp(client: httpx.AsyncClient) -> None:
    connector = make_connector(client)
    secrets, callback = await log_in(connector, client)
    assert callback["state"] == secrets.state
    await connector.check_response_issuer(callback["iss"])  # RFC 9207: the test IdP sends iss
    identity = await connector.complete(code=callback["code"], code_verifier=secrets.code_verifier,
                                        nonce=secrets.nonce)
    assert isinstance(identity, Identity)
    assert identity.idp_id == "test"
    assert identity.subject == "alice"
    assert identity.email == "alice@example.com"
    assert identity.email_verified is True
    assert identity.name == "Alice Anders"
    assert identity.groups == ("engineering",)
    assert identity.amr == ("pwd",)
    assert isinstance(identity.auth_time, int)
    assert identity.acr is None
    assert identity.claims["iss"] == TESTIDP
    assert identity.claims["aud"] == TESTIDP_CLIENT["client_id"]
    assert identity.claims["nonce"] == secrets.nonce
    assert identity.upstream_refresh_token is None  # no offline_access asked


async def test_groups_of_another_user_come_through(client: httpx.AsyncClient) -> None:
    connector = make_connector(client)
    secrets, callback = await log_in(connector, client, "carol")
    identity = await connector.complete(code=callback["code"], code_verifier=secrets.code_verifier,
                                        nonce=secrets.nonce)
    assert (identity.subject, identity.groups) == ("carol", ("it-admins", "security"))


async def test_authorization_url_carries_only_the_brokers_own_request(client: httpx.AsyncClient) -> None:
    connector = make_connector(client)
    secrets = LoginSecrets.new()
    url = await connector.authorization_url(state=secrets.state, nonce=secrets.nonce,
                                            code_challenge=secrets.code_challenge, login_hint="alice")
    assert url.startswith(f"{TESTIDP}/authorize?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query == {"response_type": "code", "client_id": TESTIDP_CLIENT["client_id"],
                     "redirect_uri": REDIRECT_URI, "scope": "openid email profile", "state": secrets.state,
                     "nonce": secrets.nonce, "code_challenge": secrets.code_challenge,
                     "code_challenge_method": "S256", "login_hint": "alice"}
    with pytest.raises(TypeError):
        await connector.authorization_url(state=secrets.state, nonce=secrets.nonce,  # type: ignore[call-arg]
                                          code_challenge=secrets.code_challenge, resource=f"{ISSUER}/demo/mcp")


async def test_upstream_refresh_token_is_kept_but_never_shown(client: httpx.AsyncClient) -> None:
    connector = make_connector(client, scopes=["openid", "email", "profile", "offline_access"])
    secrets, callback = await log_in(connector, client)
    identity = await connector.complete(code=callback["code"], code_verifier=secrets.code_verifier,
                                        nonce=secrets.nonce)
    assert identity.upstream_refresh_token
    assert identity.upstream_refresh_token not in repr(identity)
    assert identity.upstream_refresh_token not in str(identity)


async def test_a_code_redeems_once(client: httpx.AsyncClient) -> None:
    connector = make_connector(client)
    secrets, callback = await log_in(connector, client)
    await connector.complete(code=callback["code"], code_verifier=secrets.code_verifier, nonce=secrets.nonce)
    with pytest.raises(UpstreamRejected) as rejected:
        await connector.complete(code=callback["code"], code_verifier=secrets.code_verifier, nonce=secrets.nonce)
    assert rejected.value.upstream_error == "invalid_grant"
    assert rejected.value.client_error == "access_denied"


async def test_wrong_pkce_verifier_is_refused_upstream(client: httpx.AsyncClient) -> None:
    connector = make_connector(client)
    _, callback = await log_in(connector, client)
    other = LoginSecrets.new()
    with pytest.raises(UpstreamRejected) as rejected:
        await connector.complete(code=callback["code"], code_verifier=other.code_verifier, nonce=other.nonce)
    assert rejected.value.upstream_error == "invalid_grant"


async def test_a_real_id_token_for_another_login_fails_the_nonce_check(client: httpx.AsyncClient) -> None:
    connector = make_connector(client)
    secrets, callback = await log_in(connector, client)
    with pytest.raises(InvalidIdToken, match="nonce"):
        await connector.complete(code=callback["code"], code_verifier=secrets.code_verifier,
                                 nonce=LoginSecrets.new().nonce)


async def test_wrong_client_secret_is_refused_upstream(client: httpx.AsyncClient) -> None:
    idp = IdpSettings(id="test", type="test", issuer=TESTIDP, client_id=TESTIDP_CLIENT["client_id"],
                      client_secret="not-the-secret")
    connector = OidcConnector(idp, redirect_uri=REDIRECT_URI, http=client)
    secrets, callback = await log_in(connector, client)
    with pytest.raises(UpstreamRejected) as rejected:
        await connector.complete(code=callback["code"], code_verifier=secrets.code_verifier, nonce=secrets.nonce)
    assert rejected.value.upstream_error == "invalid_client"


async def test_a_callback_iss_of_another_issuer_is_refused(client: httpx.AsyncClient) -> None:
    connector = make_connector(client)
    with pytest.raises(IssuerMismatch):
        await connector.check_response_issuer("https://evil.example/testidp")
    with pytest.raises(IssuerMismatch):
        await connector.check_response_issuer(None)  # the test IdP advertises RFC 9207 support


async def test_discovery_and_jwks_are_fetched_once_for_two_logins(app: Any) -> None:
    paths: list[str] = []

    async def record(request: httpx.Request) -> None:
        paths.append(request.url.path)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER,
                                 event_hooks={"request": [record]}) as http:
        connector = make_connector(http)
        for username in ("alice", "bob"):
            secrets, callback = await log_in(connector, http, username)
            identity = await connector.complete(code=callback["code"], code_verifier=secrets.code_verifier,
                                                nonce=secrets.nonce)
            assert identity.subject == username
    assert paths.count("/testidp/.well-known/openid-configuration") == 1
    assert paths.count("/testidp/jwks") == 1
    assert paths.count("/testidp/token") == 2


async def test_concurrent_sign_ins_with_few_threads_never_deadlock(client: httpx.AsyncClient, state) -> None:
    """Sign-ins whose steps need worker threads (the cold lane), with more sign-ins than threads: no step's
    transaction may wait for a thread another one holds while it waits for the database. A deadlock would
    show as 503 "database unavailable" after the busy timeout."""
    import asyncio

    import anyio.to_thread

    from tests.support.oauth_flow import register_client, tokens_for

    app_client = register_client(state, trusted=True)
    limiter = anyio.to_thread.current_default_thread_limiter()
    threads = limiter.total_tokens
    limiter.total_tokens = 2

    async def one_browser() -> dict[str, Any]:  # each sign-in in a browser of its own (its own cookies)
        async with httpx.AsyncClient(transport=client._transport, base_url=client.base_url) as browser:
            return await tokens_for(browser, app_client.row.id)

    try:
        results = await asyncio.wait_for(asyncio.gather(*(one_browser() for _ in range(12))), timeout=60)
    finally:
        limiter.total_tokens = threads
    assert all("refresh_token" in tokens for tokens in results)
