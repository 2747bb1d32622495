"""The test IdP's protocol core end to end, without HTTP or a database."""

from __future__ import annotations

import base64
import logging
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest

from broker.testidp import pkce
from broker.testidp.authorize import LoginFailed
from broker.testidp.errors import (
    InsufficientScope,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidToken,
    LoginRequired,
    OAuthError,
    UnsupportedGrantType,
)
from broker.testidp.params import ProviderParams
from broker.testidp.provider import TestIdentityProvider
from tests.unit.testidp.fakes import CLIENT_ID, CLIENT_SECRET, ISSUER, REDIRECT_URI, FakeClock, make_provider

VERIFIER = "v" * 43
SESSION: Any = None  # the fake key ring needs no session


def auth_params(**overrides: str | None) -> dict[str, str]:
    params = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code",
              "scope": "openid email profile groups offline_access", "state": "st-1", "nonce": "no-1",
              "code_challenge": pkce.s256(VERIFIER), "code_challenge_method": "S256"}
    params.update(overrides)  # type: ignore[arg-type]
    return {k: v for k, v in params.items() if v is not None}


def q(params: dict[str, str] | list[tuple[str, str]]) -> ProviderParams:
    return ProviderParams.from_query(urlencode(params).encode())


def login(provider: TestIdentityProvider, username: str = "alice", password: str = "alice-pw",
          **overrides: str | None) -> dict[str, str]:
    response = provider.login(q({**auth_params(**overrides), "username": username, "password": password}))
    return {k: v[0] for k, v in parse_qs(urlsplit(response.location()).query).items()}


def token(provider: TestIdentityProvider, **form: str) -> dict[str, Any]:
    basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    return provider.token(q(form), basic, SESSION)


def redeem(provider: TestIdentityProvider, code: str, **extra: str) -> dict[str, Any]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER, **extra}
    return token(provider, **form)


def decode(provider: TestIdentityProvider, token_: str, audience: str) -> dict[str, Any]:
    key = jwt.PyJWK(provider.keyring.jwks(SESSION, None)["keys"][0]).key  # type: ignore[arg-type]
    return jwt.decode(token_, key, algorithms=["ES256"], audience=audience, issuer=ISSUER,
                      options={"verify_exp": False, "verify_iat": False})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def provider(clock: FakeClock) -> TestIdentityProvider:
    return make_provider(clock)


# ---------------------------------------------------------------- authorization


def test_login_redirects_with_code_state_and_iss(provider: TestIdentityProvider) -> None:
    response = login(provider)
    assert set(response) == {"code", "state", "iss"}
    assert response["state"] == "st-1" and response["iss"] == ISSUER


def test_wrong_password_shows_the_form_again(provider: TestIdentityProvider) -> None:
    with pytest.raises(LoginFailed) as failed:
        login(provider, password="nope")
    assert failed.value.username == "alice" and failed.value.request.state == "st-1"
    with pytest.raises(LoginFailed):
        login(provider, username="mallory", password="alice-pw")


@pytest.mark.parametrize("overrides", [{"client_id": "unknown"}, {"redirect_uri": "http://evil.example/cb"},
                                       {"redirect_uri": REDIRECT_URI + "/"}, {"redirect_uri": None}])
def test_client_and_redirect_errors_are_never_redirected(provider: TestIdentityProvider,
                                                         overrides: dict[str, str | None]) -> None:
    with pytest.raises(OAuthError) as error:
        provider.begin_authorization(q(auth_params(**overrides)))
    assert not error.value.redirectable


@pytest.mark.parametrize("overrides,code", [
    ({"code_challenge": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": "email"}, "invalid_scope"),
    ({"scope": "openid admin"}, "invalid_scope"),
    ({"prompt": "none"}, "login_required"),
    ({"request": "eyJ.x.y"}, "request_not_supported"),
])
def test_later_errors_redirect_with_state(provider: TestIdentityProvider, overrides: dict[str, str | None],
                                         code: str) -> None:
    with pytest.raises(OAuthError) as error:
        provider.begin_authorization(q(auth_params(**overrides)))
    assert error.value.error == code and error.value.redirectable
    response = provider.authorization_error(error.value)
    query = parse_qs(urlsplit(response.location()).query)
    assert query["error"] == [code] and query["state"] == ["st-1"] and query["iss"] == [ISSUER]


def test_repeated_parameter_after_validation_redirects_invalid_request(provider: TestIdentityProvider) -> None:
    pairs = list(auth_params().items()) + [("scope", "openid")]
    with pytest.raises(InvalidRequest) as error:
        provider.begin_authorization(q(pairs))
    assert error.value.redirectable


def test_repeated_redirect_uri_is_not_redirected(provider: TestIdentityProvider) -> None:
    pairs = list(auth_params().items()) + [("redirect_uri", REDIRECT_URI)]
    with pytest.raises(InvalidRequest) as error:
        provider.begin_authorization(q(pairs))
    assert not error.value.redirectable


def test_error_redirect_keeps_the_redirect_uris_query() -> None:
    from broker.testidp.authorize import AuthorizationResponse
    location = AuthorizationResponse("https://c.example/cb?x=1", {"code": "c", "iss": ISSUER}).location()
    assert parse_qs(urlsplit(location).query) == {"x": ["1"], "code": ["c"], "iss": [ISSUER]}


# ---------------------------------------------------------------- authorization code grant


def test_id_token_claims(provider: TestIdentityProvider, clock: FakeClock) -> None:
    code = login(provider)["code"]
    clock.advance(5)
    body = redeem(provider, code)
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert body["scope"] == "openid email profile groups offline_access"
    assert jwt.get_unverified_header(body["id_token"])["kid"] == provider.keyring.jwks(SESSION, None)["keys"][0]["kid"]
    claims = decode(provider, body["id_token"], CLIENT_ID)
    now = int(clock.now)
    assert claims == {"iss": ISSUER, "sub": "alice", "aud": CLIENT_ID, "azp": CLIENT_ID, "iat": now,
                      "exp": now + 300, "auth_time": now - 5, "nonce": "no-1", "email": "alice@example.com",
                      "email_verified": True, "name": "Alice Anders", "groups": ["engineering"],
                      "amr": ["pwd"], "at_hash": claims["at_hash"]}


def test_access_token_is_an_rfc_9068_jwt_for_userinfo(provider: TestIdentityProvider) -> None:
    body = redeem(provider, login(provider)["code"])
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    claims = decode(provider, body["access_token"], f"{ISSUER}/userinfo")
    assert claims["sub"] == "alice" and claims["client_id"] == CLIENT_ID
    assert claims["scope"] == "openid email profile groups offline_access"


def test_claims_follow_the_scope(provider: TestIdentityProvider) -> None:
    body = redeem(provider, login(provider, scope="openid")["code"])
    claims = decode(provider, body["id_token"], CLIENT_ID)
    assert "email" not in claims and "name" not in claims and claims["groups"] == ["engineering"]
    assert "refresh_token" not in body  # no offline_access, no refresh token


def test_code_without_nonce_gives_id_token_without_nonce(provider: TestIdentityProvider) -> None:
    body = redeem(provider, login(provider, nonce=None)["code"])
    assert "nonce" not in decode(provider, body["id_token"], CLIENT_ID)


def test_expired_code_is_rejected(provider: TestIdentityProvider, clock: FakeClock) -> None:
    code = login(provider)["code"]
    clock.advance(60)
    with pytest.raises(InvalidGrant, match="expired"):
        redeem(provider, code)


def test_code_is_single_use(provider: TestIdentityProvider) -> None:
    code = login(provider)["code"]
    redeem(provider, code)
    with pytest.raises(InvalidGrant, match="already used"):
        redeem(provider, code)


def test_failed_redemption_still_uses_up_the_code(provider: TestIdentityProvider) -> None:
    code = login(provider)["code"]
    with pytest.raises(InvalidGrant):
        redeem(provider, code, code_verifier="w" * 43)
    with pytest.raises(InvalidGrant, match="already used"):
        redeem(provider, code)


@pytest.mark.parametrize("extra", [{"code_verifier": "w" * 43}, {"redirect_uri": REDIRECT_URI + "?x=1"}])
def test_code_bindings_are_checked(provider: TestIdentityProvider, extra: dict[str, str]) -> None:
    with pytest.raises(InvalidGrant):
        redeem(provider, login(provider)["code"], **extra)


def test_code_of_another_client_is_rejected(provider: TestIdentityProvider) -> None:
    code = login(provider)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER, "client_id": "other", "client_secret": "other-secret"}
    with pytest.raises(InvalidGrant, match="another client"):
        provider.token(q(form), None, SESSION)


# ---------------------------------------------------------------- client authentication and dispatch


@pytest.mark.parametrize("authorization,form", [
    (None, {}),
    ("Basic " + base64.b64encode(b"mcp-auth-broker:wrong").decode(), {}),
    ("Basic !!!", {}),
    ("Bearer abc", {}),
    (None, {"client_id": CLIENT_ID, "client_secret": "wrong"}),
    (None, {"client_id": "nobody", "client_secret": CLIENT_SECRET}),
])
def test_client_authentication_failures(provider: TestIdentityProvider, authorization: str | None,
                                        form: dict[str, str]) -> None:
    with pytest.raises(InvalidClient):
        provider.token(q({"grant_type": "refresh_token", "refresh_token": "x", **form}), authorization, SESSION)


def test_two_client_authentication_methods_are_refused(provider: TestIdentityProvider) -> None:
    basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    with pytest.raises(InvalidRequest):
        provider.token(q({"grant_type": "refresh_token", "client_secret": CLIENT_SECRET}), basic, SESSION)


def test_basic_credentials_are_form_decoded(provider: TestIdentityProvider) -> None:
    from broker.testidp.directory import basic_credentials
    header = "Basic " + base64.b64encode(b"a%3Ab:s%2Bt+x").decode()
    assert basic_credentials(header) == ("a:b", "s+t x")  # RFC 6749 §2.3.1


def test_unknown_grant_type(provider: TestIdentityProvider) -> None:
    with pytest.raises(UnsupportedGrantType):
        token(provider, grant_type="password")


def test_registered_grant_runs_after_client_authentication(provider: TestIdentityProvider) -> None:
    seen = []
    provider.register_grant("urn:example:grant", lambda request: seen.append(request.client.client_id) or {})
    token(provider, grant_type="urn:example:grant")
    assert seen == [CLIENT_ID]
    assert "urn:example:grant" in provider.metadata()["grant_types_supported"]
    with pytest.raises(InvalidClient):
        provider.token(q({"grant_type": "urn:example:grant"}), None, SESSION)


# ---------------------------------------------------------------- refresh tokens


def test_refresh_issues_new_tokens(provider: TestIdentityProvider, clock: FakeClock) -> None:
    first = redeem(provider, login(provider)["code"])
    clock.advance(100)
    second = token(provider, grant_type="refresh_token", refresh_token=first["refresh_token"])
    claims = decode(provider, second["id_token"], CLIENT_ID)
    assert claims["sub"] == "alice" and "nonce" not in claims
    assert claims["auth_time"] == int(clock.now) - 100  # OIDC Core §12.2: the original authentication
    assert second["refresh_token"] != first["refresh_token"]


def test_refresh_token_is_bound_to_its_client(provider: TestIdentityProvider) -> None:
    refresh_token = redeem(provider, login(provider)["code"])["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "other",
            "client_secret": "other-secret"}
    with pytest.raises(InvalidGrant, match="another client"):
        provider.token(q(form), None, SESSION)


def test_refresh_token_expires_absolutely(provider: TestIdentityProvider, clock: FakeClock) -> None:
    refresh_token = redeem(provider, login(provider)["code"])["refresh_token"]
    clock.advance(86400 - 10)
    rotated = token(provider, grant_type="refresh_token", refresh_token=refresh_token)["refresh_token"]
    clock.advance(10)
    with pytest.raises(InvalidGrant, match="expired"):
        token(provider, grant_type="refresh_token", refresh_token=rotated)


def test_refresh_scope_may_only_narrow(provider: TestIdentityProvider) -> None:
    refresh_token = redeem(provider, login(provider, scope="openid email offline_access")["code"])["refresh_token"]
    narrowed = token(provider, grant_type="refresh_token", refresh_token=refresh_token, scope="openid")
    assert narrowed["scope"] == "openid"
    with pytest.raises(InvalidScope):
        token(provider, grant_type="refresh_token", refresh_token=refresh_token, scope="openid profile")


def test_code_is_not_a_refresh_token(provider: TestIdentityProvider) -> None:
    with pytest.raises(InvalidGrant):
        token(provider, grant_type="refresh_token", refresh_token=login(provider)["code"])


# ---------------------------------------------------------------- userinfo


def test_userinfo_returns_the_users_claims(provider: TestIdentityProvider) -> None:
    access_token = redeem(provider, login(provider)["code"])["access_token"]
    assert provider.userinfo(access_token, SESSION) == {
        "sub": "alice", "email": "alice@example.com", "email_verified": True, "name": "Alice Anders",
        "groups": ["engineering"]}


def test_userinfo_refuses_an_id_token(provider: TestIdentityProvider) -> None:
    id_token = redeem(provider, login(provider)["code"])["id_token"]
    with pytest.raises(InvalidToken, match="token type"):
        provider.userinfo(id_token, SESSION)


def test_userinfo_refuses_expired_tokens(provider: TestIdentityProvider, clock: FakeClock) -> None:
    access_token = redeem(provider, login(provider)["code"])["access_token"]
    clock.advance(300 + 60)
    with pytest.raises(InvalidToken, match="expired"):
        provider.userinfo(access_token, SESSION)


def test_userinfo_refuses_tokens_of_another_issuer(provider: TestIdentityProvider) -> None:
    other = make_provider()
    access_token = redeem(other, login(other)["code"])["access_token"]
    with pytest.raises(InvalidToken, match="unknown key"):
        provider.userinfo(access_token, SESSION)
    with pytest.raises(InvalidToken):
        provider.userinfo("not-a-jwt", SESSION)


def test_userinfo_needs_openid_scope(provider: TestIdentityProvider) -> None:
    refresh_token = redeem(provider, login(provider)["code"])["refresh_token"]
    access_token = token(provider, grant_type="refresh_token", refresh_token=refresh_token,
                         scope="email")["access_token"]
    with pytest.raises(InsufficientScope):
        provider.userinfo(access_token, SESSION)


# ---------------------------------------------------------------- operations


def test_construction_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="broker.testidp"):
        make_provider()
    [record] = [r for r in caplog.records if r.name == "broker.testidp"]
    assert record.levelno == logging.WARNING and "never be used in production" in record.getMessage()


def test_prompt_none_is_login_required(provider: TestIdentityProvider) -> None:
    with pytest.raises(LoginRequired):
        provider.begin_authorization(q(auth_params(prompt="none")))
