"""The Okta connector: issuer forms of org and custom authorization servers, the groups claim, and
Okta's two error shapes (OAuth errors and its API's ``errorCode`` JSON)."""

from __future__ import annotations

import httpx
import pytest

from broker import config
from broker.app import CONNECTOR_TYPES, connector_factories
from broker.config import IdpSettings
from broker.federation import UpstreamRejected, UpstreamUnavailable, build_connectors, error_from_response
from broker.federation.entra import EntraConnector
from broker.federation.okta import OktaConnector, parse_issuer
from tests.conftest import base_settings
from tests.unit.federation.fakes import DROP, ENTRA_LOGIN, TENANT, FakeIdp, log_in

CUSTOM = "https://acme.okta.com/oauth2/default"
ORG = "https://acme.okta.com"


def okta_error(code: str, summary: str) -> dict[str, object]:
    """Okta's API error body, as its documentation shows it."""
    return {"errorCode": code, "errorSummary": summary, "errorLink": code, "errorId": "oaeq1w2e3r4t5y6u7i8o9p0",
            "errorCauses": []}


@pytest.fixture
def idp() -> FakeIdp:
    return FakeIdp(issuer=CUSTOM)


@pytest.fixture
def connector(idp: FakeIdp, http: httpx.AsyncClient) -> OktaConnector:
    return idp.connector(http, OktaConnector, type="okta")


# ---------------------------------------------------------------- issuer forms


@pytest.mark.parametrize("issuer,server", [
    (ORG, None),
    (CUSTOM, "default"),
    ("https://acme.okta.com/oauth2/aus1a2b3c4d5e6f7g8h9", "aus1a2b3c4d5e6f7g8h9"),
    ("https://acme.okta-emea.com/oauth2/default", "default"),
    ("https://login.acme.example/oauth2/default", "default"),  # an Okta custom URL domain
    ("http://127.0.0.1:8123/oauth2/default", "default"),  # test fixtures on loopback
    ("http://127.0.0.1:8123", None),
])
def test_issuer_forms_are_recognised(issuer: str, server: str | None) -> None:
    assert parse_issuer(issuer).authorization_server == server


@pytest.mark.parametrize("issuer", [
    "https://acme.okta.com/",  # discovery's issuer has no trailing slash; it would never match
    "https://acme.okta.com/oauth2/default/",
    "https://acme.okta.com/oauth2/v1",  # the org server's endpoint prefix, not an issuer
    "https://acme.okta.com/oauth2/default/v1/authorize",  # an endpoint pasted as the issuer
    "https://acme.okta.com/oauth2",
    "https://acme.okta.com/app/acme_broker_1/sso",
    "https://acme.okta.com/oauth2/default?x=1",
    "http://acme.okta.com/oauth2/default",  # http only on loopback
])
def test_other_issuers_are_refused_at_start(issuer: str) -> None:
    with pytest.raises(ValueError, match="Okta issuer"):
        parse_issuer(issuer)
    with pytest.raises(ValueError):
        OktaConnector(IdpSettings(id="okta", type="okta", issuer=issuer, client_id="c"),
                      redirect_uri="https://b/cb", http=httpx.AsyncClient())


# ---------------------------------------------------------------- logins


async def test_custom_authorization_server_login(connector: OktaConnector) -> None:
    identity = await log_in(connector)
    assert connector.authorization_server == "default"
    assert (identity.idp_id, identity.subject, identity.email, identity.email_verified) == (
        "acme", "00u-alice", "alice@example.com", True)
    assert identity.groups == ("engineering", "everyone")
    assert identity.claims["iss"] == CUSTOM


async def test_org_authorization_server_login() -> None:
    idp = FakeIdp(issuer=ORG)
    idp.discovery |= {"authorization_endpoint": f"{ORG}/oauth2/v1/authorize",
                      "token_endpoint": f"{ORG}/oauth2/v1/token", "jwks_uri": f"{ORG}/oauth2/v1/keys"}
    async with idp.client() as http:
        connector = idp.connector(http, OktaConnector, type="okta", issuer=ORG)
        assert connector.authorization_server is None
        assert (await connector.authorization_url(state="s", nonce="n", code_challenge="c" * 43)).startswith(
            f"{ORG}/oauth2/v1/authorize?")
        identity = await log_in(connector)
    assert identity.subject == "00u-alice" and identity.claims["iss"] == ORG
    assert idp.count("/oauth2/v1/token") == 1 and idp.count("/oauth2/v1/keys") == 1


async def test_without_a_groups_claim_the_user_has_no_groups(idp: FakeIdp, connector: OktaConnector) -> None:
    idp.claim_changes["groups"] = DROP  # the app's groups claim is not configured
    assert (await log_in(connector)).groups == ()


async def test_a_renamed_groups_claim_is_read_from_config(idp: FakeIdp, http: httpx.AsyncClient) -> None:
    idp.claim_changes |= {"groups": DROP, "okta_groups": ["mcp-users"]}
    connector = idp.connector(http, OktaConnector, type="okta", claims={"groups": "okta_groups"})
    assert (await log_in(connector)).groups == ("mcp-users",)


# ---------------------------------------------------------------- Okta's error shapes


@pytest.mark.parametrize("status,code,summary", [
    (429, "E0000047", "API call exceeded rate limit due to too many requests."),
    (404, "E0000007", "Not found: Resource not found: default (AuthorizationServer)"),
    (403, "E0000015", "You do not have permission to access the feature you are requesting"),
    (500, "E0000009", "Internal Server Error"),
    (503, "E0000099", "Something new"),  # an unknown code on a 5xx: try later
])
async def test_okta_api_errors_that_mean_try_later(idp: FakeIdp, connector: OktaConnector, status: int,
                                                   code: str, summary: str) -> None:
    idp.token_status, idp.token_body = status, okta_error(code, summary)
    with pytest.raises(UpstreamUnavailable) as unavailable:
        await log_in(connector)
    assert unavailable.value.upstream_error == code
    assert unavailable.value.client_error == "temporarily_unavailable"
    assert code in unavailable.value.description and summary not in unavailable.value.description


@pytest.mark.parametrize("status,code", [(401, "E0000011"), (403, "E0000006"), (400, "E0000001")])
async def test_okta_api_errors_that_refuse_the_login(idp: FakeIdp, connector: OktaConnector, status: int,
                                                     code: str) -> None:
    idp.token_status, idp.token_body = status, okta_error(code, "Invalid token provided")
    with pytest.raises(UpstreamRejected) as rejected:
        await log_in(connector)
    assert (rejected.value.upstream_error, rejected.value.upstream_description) == (code, "Invalid token provided")
    assert rejected.value.client_error == "access_denied"
    assert "Invalid token" not in rejected.value.description  # ours, not Okta's text


async def test_okta_oauth_errors_at_the_token_endpoint(idp: FakeIdp, connector: OktaConnector) -> None:
    idp.token_status, idp.token_body = 400, {"error": "invalid_grant",
                                             "error_description": "The authorization code is invalid or has expired."}
    with pytest.raises(UpstreamRejected) as rejected:
        await log_in(connector)
    assert rejected.value.upstream_error == "invalid_grant"


@pytest.mark.parametrize("body", [{"errorCode": "not-a-code", "errorSummary": "x"}, {"errorCode": 11},
                                  {"errorSummary": "no code"}])
async def test_bodies_that_only_look_like_okta_errors(idp: FakeIdp, connector: OktaConnector,
                                                      body: dict[str, object]) -> None:
    idp.token_status, idp.token_body = 400, body
    with pytest.raises(UpstreamUnavailable, match="HTTP 400"):  # neither shape: the IdP misbehaved
        await log_in(connector)


async def test_an_unknown_authorization_server_names_okta_code_at_discovery(idp: FakeIdp,
                                                                            connector: OktaConnector) -> None:
    idp.routes["/oauth2/default/.well-known/openid-configuration"] = lambda r: httpx.Response(
        404, json=okta_error("E0000007", "Not found: Resource not found: default (AuthorizationServer)"))
    with pytest.raises(UpstreamUnavailable) as unavailable:
        await log_in(connector)
    assert "HTTP 404 (Okta E0000007: not found" in unavailable.value.description
    assert "Resource not found" not in unavailable.value.description


def test_an_unassigned_user_at_the_callback_is_access_denied() -> None:
    """Okta redirects back with an OAuth error; the callback maps it like any IdP's."""
    error = error_from_response("access_denied", "User is not assigned to the client application.")
    assert isinstance(error, UpstreamRejected)
    assert (error.client_error, error.upstream_error) == ("access_denied", "access_denied")
    assert error.upstream_description == "User is not assigned to the client application."


# ---------------------------------------------------------------- composition root


async def test_okta_and_entra_are_registered_connector_types() -> None:
    settings = config.load(None, env={}, defaults={**base_settings(), "tokens": {"clock_skew": 17}})
    idps = [IdpSettings(id="okta", type="okta", issuer=CUSTOM, client_id="c", client_secret="okta-secret"),
            IdpSettings(id="entra", type="entra", issuer=f"{ENTRA_LOGIN}/{TENANT}/v2.0", client_id="c",
                        client_secret="entra-secret")]
    async with httpx.AsyncClient() as http:
        connectors = build_connectors(idps, connector_factories(settings), http=http,
                                      redirect_uri=lambda idp: f"https://b/callback/{idp.id}")
    assert (CONNECTOR_TYPES["okta"], CONNECTOR_TYPES["entra"]) == (OktaConnector, EntraConnector)
    assert isinstance(connectors["okta"], OktaConnector) and isinstance(connectors["entra"], EntraConnector)
    assert connectors["okta"].clock_skew == connectors["entra"].clock_skew == 17
