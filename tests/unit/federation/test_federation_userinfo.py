"""UserInfo (OIDC Core §5.3) at sign-in, and what a connector asks for when the upstream check needs a refresh
token; the IdP is ``FakeIdp`` over a mock transport."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from broker.federation import InvalidIdToken, OidcConnector
from broker.federation.okta import OktaConnector
from broker.lifecycle.upstream_check import UpstreamCheck
from tests.unit.federation.fakes import DROP, ISSUER, NONCE, FakeIdp, log_in

USERINFO = f"{ISSUER}/v1/userinfo"
THIN = {"email": DROP, "email_verified": DROP, "name": DROP, "groups": DROP}  # an ID token with the subject only


@pytest.fixture
def idp() -> FakeIdp:
    fake = FakeIdp()
    fake.discovery["userinfo_endpoint"] = USERINFO
    fake.userinfo = {"sub": "00u-alice", "email": "alice@example.com", "email_verified": True,
                     "name": "Alice Anders", "groups": ["engineering"]}
    fake.routes["/oauth2/default/v1/userinfo"] = lambda request: httpx.Response(200, json=fake.userinfo)
    return fake


def userinfo_calls(idp: FakeIdp) -> list[httpx.Request]:
    return [r for r in idp.requests if r.url.path.endswith("/v1/userinfo")]


async def test_claims_only_at_userinfo_are_fetched_with_the_access_token(idp: FakeIdp,
                                                                         http: httpx.AsyncClient) -> None:
    idp.claim_changes = THIN
    identity = await log_in(idp.connector(http))
    assert (identity.email, identity.email_verified, identity.name) == ("alice@example.com", True, "Alice Anders")
    assert identity.groups == ("engineering",)
    [call] = userinfo_calls(idp)
    assert call.headers["authorization"] == "Bearer upstream-access-token"


async def test_userinfo_about_another_subject_signs_nobody_in(idp: FakeIdp, http: httpx.AsyncClient) -> None:
    idp.claim_changes = THIN
    idp.userinfo["sub"] = "00u-mallory"
    with pytest.raises(InvalidIdToken, match="another subject"):
        await log_in(idp.connector(http))


async def test_the_id_tokens_claims_win_and_email_verified_goes_with_its_email(idp: FakeIdp,
                                                                               http: httpx.AsyncClient) -> None:
    idp.claim_changes = {"email": DROP, "groups": DROP, "email_verified": True}
    idp.userinfo.update(email="alice@other.example", email_verified=DROP, name="Someone Else", iss="https://evil")
    idp.userinfo = {k: v for k, v in idp.userinfo.items() if v is not DROP}
    identity = await log_in(idp.connector(http))
    assert identity.name == "Alice Anders"  # the ID token had it
    assert (identity.email, identity.email_verified) == ("alice@other.example", None)  # userinfo said nothing
    assert identity.claims["iss"] == ISSUER


async def test_a_complete_id_token_needs_no_userinfo_unless_configured(idp: FakeIdp, http: httpx.AsyncClient) -> None:
    await log_in(idp.connector(http))
    assert userinfo_calls(idp) == []
    await log_in(idp.connector(http, userinfo="always"))
    assert len(userinfo_calls(idp)) == 1


async def test_missing_claims_are_logged(idp: FakeIdp, http: httpx.AsyncClient,
                                         caplog: pytest.LogCaptureFixture) -> None:
    idp.claim_changes = THIN
    with caplog.at_level(logging.WARNING, logger="broker.federation"):
        identity = await log_in(idp.connector(http, userinfo="never"))
    assert identity.email is None and userinfo_calls(idp) == []
    assert "sent no email, name, groups in the ID token (userinfo = never)" in caplog.text
    caplog.clear()
    idp.userinfo = {"sub": "00u-alice", "name": "Alice Anders"}
    with caplog.at_level(logging.WARNING, logger="broker.federation"):
        await log_in(idp.connector(http))
    assert "sent no email, groups in the ID token or userinfo" in caplog.text


# ---------------------------------------------------------------- asking for a refresh token


async def authorize_query(connector: OidcConnector) -> dict[str, str]:
    url = await connector.authorization_url(state="s", nonce=NONCE, code_challenge="a" * 43)
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def test_the_upstream_check_asks_for_offline_access_and_consent(idp: FakeIdp, http: httpx.AsyncClient) -> None:
    plain = await authorize_query(idp.connector(http))
    assert "offline_access" not in plain["scope"] and "prompt" not in plain
    checked = await authorize_query(idp.connector(http, check_upstream_on_refresh=True))
    assert checked["scope"].split() == ["openid", "email", "profile", "offline_access"]
    assert checked["prompt"] == "consent"  # OIDC Core §11, the generic default
    without = await authorize_query(idp.connector(http, check_upstream_on_refresh=True, offline_access_consent=False))
    assert "offline_access" in without["scope"].split() and "prompt" not in without
    okta_idp = FakeIdp(issuer="https://acme.okta.com")
    async with okta_idp.client() as okta_http:
        okta = await authorize_query(okta_idp.connector(okta_http, OktaConnector, type="okta",
                                                        check_upstream_on_refresh=True))
    assert "offline_access" in okta["scope"].split() and "prompt" not in okta  # Okta needs no prompt


async def test_an_idp_that_cannot_issue_refresh_tokens_is_not_asked_and_the_sign_in_says_so(
        idp: FakeIdp, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    idp.discovery["scopes_supported"] = ["openid", "email", "profile"]
    idp.refresh_token = None
    connector = idp.connector(http, check_upstream_on_refresh=True)
    query = await authorize_query(connector)
    assert "offline_access" not in query["scope"] and "prompt" not in query
    with caplog.at_level(logging.WARNING, logger="broker.federation"):
        await log_in(connector)
    assert "issued no refresh token at this sign-in: check_upstream_on_refresh cannot run" in caplog.text
    assert "does not list the offline_access scope" in caplog.text


async def test_start_up_says_which_idps_cannot_be_checked(idp: FakeIdp, http: httpx.AsyncClient,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    idp.discovery["grant_types_supported"] = ["authorization_code"]
    connector = idp.connector(http, check_upstream_on_refresh=True)
    check = UpstreamCheck(SimpleNamespace(idps=[connector.settings]), encryptor=None)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="broker.lifecycle"):
        await check.report_capabilities({"acme": connector})
    assert "check_upstream_on_refresh for IdP acme cannot run: its discovery document does not list the " \
           "refresh_token grant" in caplog.text
    idp.discovery["grant_types_supported"] = ["authorization_code", "refresh_token"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="broker.lifecycle"):
        await check.report_capabilities({"acme": idp.connector(http, check_upstream_on_refresh=True)})
    assert "sign-ins ask for offline_access with prompt=consent" in caplog.text
