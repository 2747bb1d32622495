"""The generic OIDC connector against a fake IdP: the authorization request, the token request,
client authentication, discovery, and every way the IdP can misbehave."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import httpx
import pytest

from broker.federation import (
    InvalidIdToken,
    IssuerMismatch,
    LoginSecrets,
    OidcConnector,
    UpstreamError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from broker.federation.http import MAX_RESPONSE_BYTES
from tests.unit.federation.fakes import (
    CLIENT_ID,
    CLIENT_SECRET,
    CODE,
    ISSUER,
    NONCE,
    REDIRECT_URI,
    REFRESH_TOKEN,
    VERIFIER,
    FakeIdp,
    log_in,
)

DISCOVERY = "/oauth2/default/.well-known/openid-configuration"
TOKEN = "/oauth2/default/v1/token"
SECRETS = LoginSecrets(state="state-123", nonce=NONCE, code_verifier=VERIFIER)


async def authorization_query(connector: OidcConnector, **kwargs: Any) -> dict[str, list[str]]:
    url = await connector.authorization_url(state=SECRETS.state, nonce=SECRETS.nonce,
                                            code_challenge=SECRETS.code_challenge, **kwargs)
    return parse_qs(urlsplit(url).query)


def form_of(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def token_requests(idp: FakeIdp) -> list[httpx.Request]:
    return [r for r in idp.requests if r.url.path == TOKEN]


# ---------------------------------------------------------------- authorization request


async def test_authorization_url_has_exactly_the_brokers_parameters(connector: OidcConnector) -> None:
    url = await connector.authorization_url(state=SECRETS.state, nonce=SECRETS.nonce,
                                            code_challenge=SECRETS.code_challenge)
    assert url.startswith(f"{ISSUER}/v1/authorize?")
    assert parse_qs(urlsplit(url).query) == {
        "response_type": ["code"], "client_id": [CLIENT_ID], "redirect_uri": [REDIRECT_URI],
        "scope": ["openid email profile"], "state": [SECRETS.state], "nonce": [NONCE],
        "code_challenge": [SECRETS.code_challenge], "code_challenge_method": ["S256"]}


async def test_login_hint_is_passed_when_given(connector: OidcConnector) -> None:
    query = await authorization_query(connector, login_hint="alice@example.com")
    assert query["login_hint"] == ["alice@example.com"]


async def test_resource_can_never_reach_the_authorization_url(connector: OidcConnector) -> None:
    for extra in ({"resource": "https://mcp.example.com/mcp"}, {"audience": "api://x"}, {"scope": "admin"}):
        with pytest.raises(TypeError):
            await authorization_query(connector, **extra)
    query = await authorization_query(connector, login_hint="alice")
    assert not {"resource", "audience"} & set(query)


async def test_endpoint_query_is_kept_and_cannot_override_ours(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.discovery["authorization_endpoint"] = f"{ISSUER}/v1/authorize?p=signin_policy&state=theirs"
    query = await authorization_query(connector)
    assert query["p"] == ["signin_policy"]
    assert query["state"] == [SECRETS.state]


async def test_openid_scope_is_always_requested(idp: FakeIdp, http: httpx.AsyncClient) -> None:
    connector = idp.connector(http, scopes=["email", "groups"])
    assert (await authorization_query(connector))["scope"] == ["openid email groups"]


@pytest.mark.parametrize("bad", [{"code_challenge": VERIFIER}, {"code_challenge": ""}, {"state": ""},
                                 {"nonce": ""}])
async def test_malformed_arguments_are_caller_bugs(connector: OidcConnector, bad: dict[str, str]) -> None:
    arguments = {"state": SECRETS.state, "nonce": SECRETS.nonce, "code_challenge": SECRETS.code_challenge, **bad}
    with pytest.raises(ValueError):
        await connector.authorization_url(**arguments)


async def test_authorization_url_needs_reachable_discovery(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.routes[DISCOVERY] = lambda request: httpx.Response(503, text="maintenance")
    with pytest.raises(UpstreamUnavailable) as unavailable:
        await authorization_query(connector)
    assert unavailable.value.client_error == "temporarily_unavailable"


# ---------------------------------------------------------------- token request and client authentication


async def test_token_request_redeems_the_code_with_the_pkce_verifier(idp: FakeIdp, connector: OidcConnector) -> None:
    await log_in(connector)
    [request] = token_requests(idp)
    assert form_of(request) == {"grant_type": "authorization_code", "code": CODE, "redirect_uri": REDIRECT_URI,
                                "code_verifier": VERIFIER}
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"


async def test_client_secret_basic_form_encodes_before_base64(idp: FakeIdp, connector: OidcConnector) -> None:
    await log_in(connector)
    [request] = token_requests(idp)
    scheme, _, value = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    encoded_id, _, encoded_secret = base64.b64decode(value).decode().partition(":")
    assert encoded_secret == "s3cret%2Fwith%2Bspecial%3Achars"  # RFC 6749 §2.3.1
    assert (unquote_plus(encoded_id), unquote_plus(encoded_secret)) == (CLIENT_ID, CLIENT_SECRET)


async def test_client_secret_post_when_it_is_all_the_idp_takes(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.discovery["token_endpoint_auth_methods_supported"] = ["client_secret_post"]
    await log_in(connector)
    [request] = token_requests(idp)
    assert "authorization" not in request.headers
    assert form_of(request)["client_id"] == CLIENT_ID
    assert form_of(request)["client_secret"] == CLIENT_SECRET


async def test_public_client_names_itself(idp: FakeIdp, http: httpx.AsyncClient) -> None:
    await log_in(idp.connector(http, client_secret=None))
    [request] = token_requests(idp)
    assert "authorization" not in request.headers
    assert form_of(request)["client_id"] == CLIENT_ID
    assert "client_secret" not in form_of(request)


async def test_resource_never_goes_upstream(idp: FakeIdp, connector: OidcConnector) -> None:
    await authorization_query(connector)
    await log_in(connector)
    for request in idp.requests:
        assert "resource" not in str(request.url)
        assert "resource" not in request.content.decode()


async def test_upstream_refresh_token_is_kept(connector: OidcConnector) -> None:
    assert (await log_in(connector)).upstream_refresh_token == REFRESH_TOKEN


# ---------------------------------------------------------------- upstream errors


@pytest.mark.parametrize("status,error", [(400, "invalid_grant"), (400, "access_denied"), (401, "invalid_client")])
async def test_oauth_error_from_the_token_endpoint_is_a_rejection(idp: FakeIdp, connector: OidcConnector,
                                                                  status: int, error: str) -> None:
    idp.token_status, idp.token_body = status, {"error": error, "error_description": "AADSTS50105: not assigned"}
    with pytest.raises(UpstreamRejected) as rejected:
        await log_in(connector)
    assert rejected.value.upstream_error == error
    assert rejected.value.upstream_description == "AADSTS50105: not assigned"
    assert rejected.value.client_error == "access_denied"
    assert "AADSTS" not in rejected.value.description


async def test_malformed_error_codes_are_not_passed_on(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.token_status, idp.token_body = 400, {"error": 'bad"code\n' * 20, "error_description": "a\u202eb\nc"}
    with pytest.raises(UpstreamRejected) as rejected:
        await log_in(connector)
    assert rejected.value.upstream_error == "invalid_response"
    assert rejected.value.upstream_description == "a?b?c"


async def test_server_error_from_the_token_endpoint_means_unavailable(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.token_status, idp.token_body = 400, {"error": "temporarily_unavailable"}
    with pytest.raises(UpstreamUnavailable):
        await log_in(connector)


def _raise(exc: Exception) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc
    return handler


UNAVAILABLE = {
    "500 with an OAuth error": lambda r: httpx.Response(500, json={"error": "server_error"}),
    "502 html": lambda r: httpx.Response(502, text="<html>bad gateway</html>"),
    "200 not JSON": lambda r: httpx.Response(200, text="<html>login</html>"),
    "200 JSON array": lambda r: httpx.Response(200, json=["id_token"]),
    "200 NaN": lambda r: httpx.Response(200, content=b'{"id_token": NaN}'),
    "400 not JSON": lambda r: httpx.Response(400, text="bad request"),
    "redirect": lambda r: httpx.Response(302, headers={"location": "https://elsewhere.example/token"}),
    "too large": lambda r: httpx.Response(200, content=b" " * (MAX_RESPONSE_BYTES + 1)),
    "read timeout": _raise(httpx.ReadTimeout("timed out")),
    "connect error": _raise(httpx.ConnectError("refused")),
    "remote protocol error": _raise(httpx.RemoteProtocolError("peer closed")),
}


@pytest.mark.parametrize("behaviour", list(UNAVAILABLE))
async def test_broken_token_endpoint_means_unavailable(idp: FakeIdp, connector: OidcConnector, behaviour: str) -> None:
    idp.routes[TOKEN] = UNAVAILABLE[behaviour]
    with pytest.raises(UpstreamUnavailable):
        await log_in(connector)
    assert not [r for r in idp.requests if r.url.host == "elsewhere.example"]  # redirects are not followed


@pytest.mark.parametrize("behaviour", list(UNAVAILABLE))
async def test_broken_discovery_or_jwks_means_unavailable(idp: FakeIdp, connector: OidcConnector,
                                                          behaviour: str) -> None:
    for path in (DISCOVERY, "/oauth2/default/v1/keys"):
        idp.routes = {path: UNAVAILABLE[behaviour]}
        with pytest.raises(UpstreamUnavailable):
            await log_in(connector)


async def test_a_slow_idp_hits_the_total_timeout(idp: FakeIdp, connector: OidcConnector) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={})

    idp.routes[TOKEN] = slow
    connector.request_timeout = 0.05
    with pytest.raises(UpstreamUnavailable, match="could not be reached"):
        await log_in(connector)


@pytest.mark.parametrize("body", [{}, {"keys": "none"}, {"keys": [1, "x", None]}, ["keys"]])
async def test_malformed_jwks_is_never_an_unexpected_exception(idp: FakeIdp, connector: OidcConnector,
                                                               body: Any) -> None:
    idp.routes["/oauth2/default/v1/keys"] = lambda r: httpx.Response(200, json=body)
    with pytest.raises(UpstreamError):
        await log_in(connector)


@pytest.mark.parametrize("jwk", [{"kty": "RSA", "kid": "key-1", "n": "!!", "e": "AQAB"},
                                 {"kty": "RSA", "kid": "key-1"}, {"kty": "EC", "kid": "key-1", "crv": "P-999"},
                                 {"kty": "RSA", "kid": "key-1", "n": 5, "e": []}])
async def test_malformed_keys_are_keys_that_do_not_fit(idp: FakeIdp, connector: OidcConnector,
                                                       jwk: dict[str, Any]) -> None:
    idp.published = [jwk]
    with pytest.raises(InvalidIdToken):
        await log_in(connector)


# ---------------------------------------------------------------- discovery


async def test_discovery_naming_another_issuer_is_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.discovery["issuer"] = "https://evil.example.com/oauth2/default"
    with pytest.raises(UpstreamUnavailable, match="different issuer"):
        await authorization_query(connector)
    with pytest.raises(UpstreamUnavailable, match="different issuer"):
        await log_in(connector)
    assert not token_requests(idp)  # no code is ever sent to endpoints of a mismatched document


async def test_discovery_issuer_must_match_byte_for_byte(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.discovery["issuer"] = ISSUER + "/"
    with pytest.raises(UpstreamUnavailable, match="different issuer"):
        await authorization_query(connector)


@pytest.mark.parametrize("field,value", [("jwks_uri", None), ("token_endpoint", "/v1/token"),
                                         ("authorization_endpoint", "http://idp.example.com/authorize"),
                                         ("token_endpoint", "javascript:alert(1)"), ("jwks_uri", 42),
                                         ("token_endpoint", "https://[::1/token")])
async def test_discovery_endpoints_must_be_https_urls(idp: FakeIdp, connector: OidcConnector, field: str,
                                                      value: Any) -> None:
    idp.discovery[field] = value
    with pytest.raises(UpstreamUnavailable, match=field):
        await authorization_query(connector)


async def test_discovery_url_drops_a_trailing_slash_of_the_issuer(idp: FakeIdp, http: httpx.AsyncClient) -> None:
    connector = idp.connector(http, issuer=ISSUER + "/")
    with pytest.raises(UpstreamUnavailable, match="different issuer"):  # the document says ISSUER
        await authorization_query(connector)
    assert idp.requests[0].url.path == DISCOVERY


async def test_discovery_failures_are_not_cached(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.routes[DISCOVERY] = lambda request: httpx.Response(500)
    with pytest.raises(UpstreamUnavailable):
        await authorization_query(connector)
    idp.routes.clear()
    await authorization_query(connector)
    assert idp.count("/openid-configuration") == 2


async def test_discovery_is_cached_for_an_hour(idp: FakeIdp, connector: OidcConnector) -> None:
    for _ in range(3):
        await authorization_query(connector)
    idp.clock.advance(3599)
    await authorization_query(connector)
    assert idp.count("/openid-configuration") == 1
    idp.clock.advance(2)
    await authorization_query(connector)
    assert idp.count("/openid-configuration") == 2


# ---------------------------------------------------------------- RFC 9207 iss on the callback


async def test_callback_iss_must_name_the_idp(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.discovery["authorization_response_iss_parameter_supported"] = True
    await connector.check_response_issuer(ISSUER)
    for iss in ("https://evil.example.com/oauth2/default", ISSUER + "/", None):
        with pytest.raises(IssuerMismatch) as mismatch:
            await connector.check_response_issuer(iss)
        assert mismatch.value.client_error == "access_denied"


async def test_callback_without_iss_is_fine_when_the_idp_never_sends_it(connector: OidcConnector) -> None:
    await connector.check_response_issuer(None)
    with pytest.raises(IssuerMismatch):
        await connector.check_response_issuer("https://evil.example.com")


# ---------------------------------------------------------------- no secrets in logs


async def test_no_code_secret_or_token_is_ever_logged(idp: FakeIdp, http: httpx.AsyncClient,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    connector = idp.connector(http)
    id_tokens = [idp.issue_id_token()]
    await log_in(connector)
    idp.claim_changes["nonce"] = "another-nonce"
    id_tokens.append(idp.issue_id_token())
    with pytest.raises(InvalidIdToken):
        await log_in(connector)
    idp.token_status, idp.token_body = 400, {"error": "invalid_grant", "error_description": f"code {CODE} is used"}
    with pytest.raises(UpstreamRejected):
        await log_in(connector)
    idp.routes[TOKEN] = _raise(httpx.ConnectError(f"refused {CLIENT_SECRET}"))
    with pytest.raises(UpstreamUnavailable):
        await log_in(connector)
    logged = caplog.text + " ".join(str(vars(record)) for record in caplog.records)
    assert "upstream login verified" in caplog.text
    for secret in (CODE, VERIFIER, CLIENT_SECRET, REFRESH_TOKEN, NONCE, "upstream-access-token", *id_tokens):
        assert secret not in logged
