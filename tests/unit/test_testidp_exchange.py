"""The test IdP's token exchange into ID-JAGs (RFC 8693, draft-ietf-oauth-identity-assertion-authz-grant),
through the protocol core, without HTTP or a database."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from pydantic import ValidationError

from broker import config, dev
from broker.keys.crypto import Encryptor
from broker.testidp import pkce
from broker.testidp.errors import InvalidClient, OAuthError
from broker.testidp.exchange import ID_JAG, ID_TOKEN, REFRESH_TOKEN, TOKEN_EXCHANGE
from broker.testidp.params import ProviderParams
from broker.testidp.provider import TestIdentityProvider
from tests.unit.testidp.fakes import CLIENT_ID, CLIENT_SECRET, ISSUER, REDIRECT_URI, SETTINGS, FakeClock, FakeKeyRing

BROKER = "http://127.0.0.1:8000"
RESOURCE = "http://127.0.0.1:8000/demo/mcp"
MAPPED_CLIENT = "mapped"
VERIFIER = "v" * 43
SESSION: Any = None  # the fake key ring needs no session
ENCRYPTOR = Encryptor(b"k" * 32)


MAPPED = config.TestIdpClient.model_validate({
    "client_id": MAPPED_CLIENT, "client_secret": "mapped-secret", "redirect_uris": [REDIRECT_URI],
    "resource_client_id": "client-at-the-broker"})


def settings(**overrides: Any) -> config.TestIdpSettings:
    """The shared test IdP settings plus a client with a resource_client_id, issuing ID-JAGs for two servers."""
    return SETTINGS.model_copy(update={"clients": [*SETTINGS.clients, MAPPED],
                                       "id_jag_audiences": [BROKER, "https://as.example.com"], **overrides})


def make(clock: FakeClock, keyring: FakeKeyRing | None = None, **overrides: Any) -> TestIdentityProvider:
    return TestIdentityProvider(settings(**overrides), issuer=ISSUER, keyring=keyring or FakeKeyRing(),
                                encryptor=ENCRYPTOR, clock=clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def provider(clock: FakeClock) -> TestIdentityProvider:
    return make(clock)


def q(params: dict[str, str] | list[tuple[str, str]]) -> ProviderParams:
    return ProviderParams.from_query(urlencode(params).encode())


def basic(client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def tokens(provider: TestIdentityProvider, client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET,
           scope: str = "openid email offline_access") -> dict[str, Any]:
    """Log alice in at ``client_id`` and redeem the code: what the client holds after SSO."""
    params = {"client_id": client_id, "redirect_uri": REDIRECT_URI, "response_type": "code", "scope": scope,
              "code_challenge": pkce.s256(VERIFIER), "code_challenge_method": "S256",
              "username": "alice", "password": "alice-pw"}
    location = provider.login(q(params)).location()
    code = parse_qs(urlsplit(location).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": VERIFIER}
    return provider.token(q(form), basic(client_id, secret), SESSION)


def exchange_form(subject_token: str, **overrides: str | None) -> dict[str, str]:
    form = {"grant_type": TOKEN_EXCHANGE, "requested_token_type": ID_JAG, "subject_token": subject_token,
            "subject_token_type": ID_TOKEN, "audience": BROKER, "resource": RESOURCE, "scope": "tools:read"}
    form.update(overrides)  # type: ignore[arg-type]
    return {k: v for k, v in form.items() if v is not None}


def exchange(provider: TestIdentityProvider, subject_token: str, client_id: str = CLIENT_ID,
             secret: str = CLIENT_SECRET, **overrides: str | None) -> dict[str, Any]:
    return provider.token(q(exchange_form(subject_token, **overrides)), basic(client_id, secret), SESSION)


def verify(provider: TestIdentityProvider, id_jag: str, audience: str = BROKER) -> dict[str, Any]:
    """Verify as a resource AS does: the key from the test IdP's JWKS by kid, ES256 only."""
    kid = jwt.get_unverified_header(id_jag)["kid"]
    [jwk] = [k for k in provider.jwks(SESSION)["keys"] if k["kid"] == kid]
    return jwt.decode(id_jag, jwt.PyJWK(jwk).key, algorithms=["ES256"], audience=audience, issuer=ISSUER,
                      options={"verify_exp": False, "verify_iat": False})


def refused(provider: TestIdentityProvider, subject_token: str, client_id: str = CLIENT_ID,
            secret: str = CLIENT_SECRET, **overrides: str | None) -> OAuthError:
    with pytest.raises(OAuthError) as error:
        exchange(provider, subject_token, client_id, secret, **overrides)
    return error.value


# ---------------------------------------------------------------- success


def test_id_token_becomes_an_id_jag(provider: TestIdentityProvider, clock: FakeClock) -> None:
    id_token = tokens(provider)["id_token"]
    clock.advance(10)
    body = exchange(provider, id_token)
    assert body == {"issued_token_type": ID_JAG, "access_token": body["access_token"], "token_type": "N_A",
                    "expires_in": 300, "scope": "tools:read"}  # RFC 8693 §2.2.1, and no refresh token
    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "oauth-id-jag+jwt" and header["alg"] == "ES256"
    claims = verify(provider, body["access_token"])
    now = int(clock.now)
    assert claims == {"iss": ISSUER, "sub": "alice", "aud": BROKER, "client_id": CLIENT_ID, "jti": claims["jti"],
                      "iat": now, "exp": now + 300, "resource": RESOURCE, "scope": "tools:read",
                      "auth_time": now - 10, "amr": ["pwd"], "email": "alice@example.com", "email_verified": True}
    assert len(claims["jti"]) == 32


def test_every_id_jag_has_its_own_jti(provider: TestIdentityProvider) -> None:
    id_token = tokens(provider)["id_token"]
    first, second = (verify(provider, exchange(provider, id_token)["access_token"]) for _ in range(2))
    assert first["jti"] != second["jti"]


def test_lifetime_follows_the_configuration(clock: FakeClock) -> None:
    provider = make(clock, id_jag_lifetime=60)
    body = exchange(provider, tokens(provider)["id_token"])
    claims = verify(provider, body["access_token"])
    assert body["expires_in"] == 60 and claims["exp"] - claims["iat"] == 60


def test_signing_keys_stay_published_as_long_as_an_id_jag_lives(clock: FakeClock) -> None:
    assert make(clock, id_jag_lifetime=3600).key_grace.total_seconds() == 3600 + 60


def test_client_id_is_mapped_to_the_resource_client_id(provider: TestIdentityProvider) -> None:
    id_token = tokens(provider, MAPPED_CLIENT, "mapped-secret")["id_token"]
    body = exchange(provider, id_token, MAPPED_CLIENT, "mapped-secret")
    assert verify(provider, body["access_token"])["client_id"] == "client-at-the-broker"


def test_audience_is_any_configured_one(provider: TestIdentityProvider) -> None:
    body = exchange(provider, tokens(provider)["id_token"], audience="https://as.example.com",
                    resource="https://mcp.example.com/mcp")
    claims = verify(provider, body["access_token"], audience="https://as.example.com")
    assert claims["resource"] == "https://mcp.example.com/mcp"


@pytest.mark.parametrize("scope,expected", [
    ("tools:read tools:call", "tools:read tools:call"),
    ("openid tools:read offline_access tools:read", "tools:read"),  # login scopes dropped, repeats once
    ("openid offline_access", None),
    (None, None),
])
def test_scope_is_passed_through_without_login_scopes(provider: TestIdentityProvider, scope: str | None,
                                                      expected: str | None) -> None:
    body = exchange(provider, tokens(provider)["id_token"], scope=scope)
    claims = verify(provider, body["access_token"])
    assert body.get("scope") == expected and claims.get("scope") == expected


@pytest.mark.parametrize("resource", ["https://mcp.example.com/mcp", "https://mcp.example.com:8443/a?x=1",
                                      "http://localhost:3000/mcp", "http://[::1]:9000/mcp"])
def test_resource_may_be_https_or_loopback_http(provider: TestIdentityProvider, resource: str) -> None:
    body = exchange(provider, tokens(provider)["id_token"], resource=resource)
    assert verify(provider, body["access_token"])["resource"] == resource


def test_refresh_token_as_subject(provider: TestIdentityProvider, clock: FakeClock) -> None:
    held = tokens(provider)
    clock.advance(3600)  # the ID token is long expired; the refresh token still stands for the login
    body = exchange(provider, held["refresh_token"], subject_token_type=REFRESH_TOKEN)
    claims = verify(provider, body["access_token"])
    assert claims["sub"] == "alice" and claims["auth_time"] == int(clock.now) - 3600
    assert "refresh_token" not in body


def test_client_secret_post_works_too(provider: TestIdentityProvider) -> None:
    form = {**exchange_form(tokens(provider)["id_token"]), "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    assert provider.token(q(form), None, SESSION)["issued_token_type"] == ID_JAG


def test_issuance_is_logged_without_the_tokens(provider: TestIdentityProvider,
                                               caplog: pytest.LogCaptureFixture) -> None:
    id_token = tokens(provider)["id_token"]
    with caplog.at_level(logging.INFO, logger="broker.testidp"):
        id_jag = exchange(provider, id_token)["access_token"]
    [record] = [r for r in caplog.records if r.getMessage() == "test IdP ID-JAG issued"]
    assert (record.user, record.client_id, record.audience, record.resource) == ("alice", CLIENT_ID, BROKER, RESOURCE)
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert id_jag not in logged and id_token not in logged


# ---------------------------------------------------------------- discovery and configuration


def test_discovery_advertises_the_exchange(provider: TestIdentityProvider) -> None:
    metadata = provider.metadata()
    assert TOKEN_EXCHANGE in metadata["grant_types_supported"]
    assert metadata["identity_chaining_requested_token_types_supported"] == [ID_JAG]


def test_no_audiences_means_no_exchange(clock: FakeClock) -> None:
    provider = make(clock, id_jag_audiences=[])
    metadata = provider.metadata()
    assert TOKEN_EXCHANGE not in metadata["grant_types_supported"]
    assert "identity_chaining_requested_token_types_supported" not in metadata
    error = refused(provider, tokens(provider)["id_token"])
    assert error.error == "unsupported_grant_type"


@pytest.mark.parametrize("lifetime", [29, 3601])
def test_id_jag_lifetime_is_bounded(lifetime: int) -> None:
    with pytest.raises(ValidationError):
        config.TestIdpSettings.model_validate({"id_jag_lifetime": lifetime})


def test_dev_test_idp_issues_id_jags_for_its_broker(tmp_path: Path) -> None:
    defaults = dev.defaults("127.0.0.1", 8123, tmp_path)
    assert defaults["testidp"]["id_jag_audiences"] == ["http://127.0.0.1:8123"]


# ---------------------------------------------------------------- refusals


def test_client_authentication_is_required(provider: TestIdentityProvider) -> None:
    form = exchange_form(tokens(provider)["id_token"])
    with pytest.raises(InvalidClient) as error:
        provider.token(q(form), None, SESSION)
    assert error.value.status_code == 401
    with pytest.raises(InvalidClient):
        provider.token(q(form), basic(CLIENT_ID, "wrong"), SESSION)


@pytest.mark.parametrize("requested", [None, "urn:ietf:params:oauth:token-type:access_token",
                                       "urn:ietf:params:oauth:token-type:jwt"])
def test_requested_token_type_must_be_id_jag(provider: TestIdentityProvider, requested: str | None) -> None:
    error = refused(provider, tokens(provider)["id_token"], requested_token_type=requested)
    assert error.error == "invalid_request"


@pytest.mark.parametrize("subject_type", ["urn:ietf:params:oauth:token-type:access_token",
                                          "urn:ietf:params:oauth:token-type:saml2", ID_JAG, "id_token"])
def test_other_subject_token_types_are_unsupported(provider: TestIdentityProvider, subject_type: str) -> None:
    error = refused(provider, tokens(provider)["id_token"], subject_token_type=subject_type)
    assert error.error == "unsupported_token_type"


@pytest.mark.parametrize("missing", ["subject_token", "subject_token_type"])
def test_subject_token_and_its_type_are_required(provider: TestIdentityProvider, missing: str) -> None:
    form = exchange_form(tokens(provider)["id_token"])
    del form[missing]
    with pytest.raises(OAuthError) as error:
        provider.token(q(form), basic(), SESSION)
    assert error.value.error == "invalid_request"


def test_id_token_of_another_client_is_refused(provider: TestIdentityProvider) -> None:
    id_token = tokens(provider, "other", "other-secret")["id_token"]
    error = refused(provider, id_token)
    assert error.error == "invalid_grant" and "audience" in error.description.lower()


def test_expired_id_token_is_refused(provider: TestIdentityProvider, clock: FakeClock) -> None:
    id_token = tokens(provider)["id_token"]
    clock.advance(300 + 60)  # lifetime plus the clock skew
    error = refused(provider, id_token)
    assert error.error == "invalid_grant" and "expired" in error.description


def test_tampered_id_token_is_refused(provider: TestIdentityProvider) -> None:
    id_token = tokens(provider)["id_token"]
    header, payload, signature = id_token.split(".")
    claims = jwt.decode(id_token, options={"verify_signature": False})
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "bob"}).encode()).rstrip(b"=").decode()
    assert refused(provider, f"{header}.{forged}.{signature}").error == "invalid_grant"
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    assert refused(provider, f"{header}.{payload}.{flipped}").error == "invalid_grant"
    assert refused(provider, "not-a-jwt").error == "invalid_grant"


def test_id_token_of_another_issuer_is_refused(provider: TestIdentityProvider, clock: FakeClock) -> None:
    stranger = make(clock)  # same issuer string, its own key: not in our JWKS
    error = refused(provider, tokens(stranger)["id_token"])
    assert error.error == "invalid_grant" and "unknown key" in error.description


def test_access_token_is_not_an_id_token(provider: TestIdentityProvider) -> None:
    error = refused(provider, tokens(provider)["access_token"])  # typ at+jwt (RFC 8725 §3.11)
    assert error.error == "invalid_grant" and "token type" in error.description


def test_id_jag_is_not_an_id_token(provider: TestIdentityProvider) -> None:
    id_jag = exchange(provider, tokens(provider)["id_token"])["access_token"]
    assert refused(provider, id_jag).error == "invalid_grant"


def test_refresh_token_of_another_client_is_refused(provider: TestIdentityProvider) -> None:
    refresh_token = tokens(provider, "other", "other-secret")["refresh_token"]
    error = refused(provider, refresh_token, subject_token_type=REFRESH_TOKEN)
    assert error.error == "invalid_grant" and "another client" in error.description


def test_expired_refresh_token_is_refused(provider: TestIdentityProvider, clock: FakeClock) -> None:
    refresh_token = tokens(provider)["refresh_token"]
    clock.advance(86400)
    error = refused(provider, refresh_token, subject_token_type=REFRESH_TOKEN)
    assert error.error == "invalid_grant" and "expired" in error.description


def test_subject_token_types_are_not_interchangeable(provider: TestIdentityProvider) -> None:
    held = tokens(provider)
    assert refused(provider, held["id_token"], subject_token_type=REFRESH_TOKEN).error == "invalid_grant"
    assert refused(provider, held["refresh_token"], subject_token_type=ID_TOKEN).error == "invalid_grant"


def test_user_removed_since_login_is_refused(clock: FakeClock) -> None:
    keyring = FakeKeyRing()
    held = tokens(make(clock, keyring))
    alice_gone = make(clock, keyring, users=[u for u in SETTINGS.users if u.username != "alice"])
    for subject, subject_type in ((held["id_token"], ID_TOKEN), (held["refresh_token"], REFRESH_TOKEN)):
        error = refused(alice_gone, subject, subject_token_type=subject_type)
        assert error.error == "invalid_grant" and "no longer exists" in error.description


@pytest.mark.parametrize("audience,code", [
    ("https://elsewhere.example.com", "invalid_target"),
    (BROKER + "/", "invalid_target"),  # compared exactly
    (None, "invalid_request"),
])
def test_audience_must_be_configured(provider: TestIdentityProvider, audience: str | None, code: str) -> None:
    assert refused(provider, tokens(provider)["id_token"], audience=audience).error == code


@pytest.mark.parametrize("resource", [
    None, "", "/demo/mcp", "demo", "http://mcp.example.com/mcp", "ftp://127.0.0.1/mcp", "https:///mcp",
    "https://mcp.example.com/mcp#frag", "https://mcp.example.com/mcp#", "https://mcp.example.com/ mcp",
    "https://mcp.example.com:99999/mcp", "http://localhost.example.com/mcp", "http://127.0.0.1@evil.example/mcp",
])
def test_resource_must_be_an_https_or_loopback_url(provider: TestIdentityProvider, resource: str | None) -> None:
    assert refused(provider, tokens(provider)["id_token"], resource=resource).error == "invalid_target"


@pytest.mark.parametrize("scope", ['tools:"read"', "tools\tread", "tools:read\\x"])
def test_scope_must_be_scope_tokens(provider: TestIdentityProvider, scope: str) -> None:
    assert refused(provider, tokens(provider)["id_token"], scope=scope).error == "invalid_scope"


@pytest.mark.parametrize("actor", [{"actor_token": "x", "actor_token_type": ID_TOKEN}, {"actor_token": "x"},
                                   {"actor_token_type": ID_TOKEN}])
def test_actor_tokens_are_not_supported(provider: TestIdentityProvider, actor: dict[str, str]) -> None:
    assert refused(provider, tokens(provider)["id_token"], **actor).error == "invalid_request"


@pytest.mark.parametrize("name,value", [("audience", "https://as.example.com"),
                                        ("resource", "https://mcp.example.com/mcp"),
                                        ("subject_token", "x"), ("scope", "tools:call")])
def test_repeated_parameters_are_refused(provider: TestIdentityProvider, name: str, value: str) -> None:
    pairs = list(exchange_form(tokens(provider)["id_token"]).items()) + [(name, value)]
    with pytest.raises(OAuthError) as error:
        provider.token(q(pairs), basic(), SESSION)
    assert error.value.error == "invalid_request" and "repeated" in error.value.description
