"""The Entra ID connector: tenant and multi-tenant issuers, ``tid``, ``oid``, group ids and group overage,
and the Microsoft Graph directory behind it."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from broker.config import IdpSettings
from broker.federation import InvalidIdToken, IssuerMismatch, UpstreamUnavailable
from broker.federation.entra import EntraConnector, EntraIssuer, GraphGroupDirectory, allowed_tenants, parse_issuer
from tests.support.hostile import signed, wrong_claims
from tests.unit.federation.fakes import (
    ALICE_OID,
    CLIENT_ID,
    CLIENT_SECRET,
    DROP,
    ENGINEERING_ID,
    ENTRA_LOGIN,
    EVERYONE_ID,
    GRAPH,
    NOW,
    OTHER_TENANT,
    SALES_ID,
    TENANT,
    FakeClock,
    FakeGraph,
    FakeGroupDirectory,
    FakeIdp,
    entra_client,
    entra_idp,
    log_in,
    overage_claims,
)

SINGLE = f"{ENTRA_LOGIN}/{TENANT}/v2.0"
MULTI = f"{ENTRA_LOGIN}/organizations/v2.0"
GROUP_NAMES = {ENGINEERING_ID: "engineering", SALES_ID.upper(): "sales"}


@pytest.fixture
def idp() -> FakeIdp:
    return entra_idp()


@pytest.fixture
def graph() -> FakeGraph:
    return FakeGraph()


@pytest.fixture
async def http(idp: FakeIdp, graph: FakeGraph) -> AsyncIterator[httpx.AsyncClient]:
    async with entra_client(idp, graph) as client:
        yield client


def entra(idp: FakeIdp, http: httpx.AsyncClient, *, directory: Any = None, **settings: Any) -> EntraConnector:
    settings = {"type": "entra", "entra": {"group_names": GROUP_NAMES, **settings.pop("entra", {})}, **settings}
    args = {"group_directory": directory} if directory is not None else {}
    return idp.connector(http, EntraConnector, connector_args=args, **settings)


@pytest.fixture
def connector(idp: FakeIdp, http: httpx.AsyncClient) -> EntraConnector:
    return entra(idp, http)


@pytest.fixture
def multi_idp() -> FakeIdp:
    return entra_idp(multi=True)


@pytest.fixture
async def multi(multi_idp: FakeIdp, graph: FakeGraph) -> AsyncIterator[EntraConnector]:
    async with entra_client(multi_idp, graph) as client:
        yield entra(multi_idp, client, entra={"allowed_tenants": [TENANT, OTHER_TENANT.upper()]})


# ---------------------------------------------------------------- issuer forms and allowed tenants


def test_issuer_forms() -> None:
    assert parse_issuer(SINGLE) == EntraIssuer(ENTRA_LOGIN, TENANT)
    assert parse_issuer(MULTI) == EntraIssuer(ENTRA_LOGIN, None)
    assert parse_issuer(f"{ENTRA_LOGIN}/common/v2.0").tenant is None
    assert parse_issuer(f"http://127.0.0.1:9000/{TENANT}/v2.0") == EntraIssuer("http://127.0.0.1:9000", TENANT)
    assert parse_issuer(f"https://login.microsoftonline.us/{TENANT}/v2.0").tenant == TENANT  # sovereign cloud
    assert parse_issuer(MULTI).template == f"{ENTRA_LOGIN}/{{tenantid}}/v2.0"


@pytest.mark.parametrize("issuer", [
    f"{ENTRA_LOGIN}/contoso.onmicrosoft.com/v2.0",  # discovery would answer with the GUID issuer
    f"{ENTRA_LOGIN}/{TENANT.upper()}/v2.0",
    f"{ENTRA_LOGIN}/{TENANT}",  # the v1.0 endpoints
    f"https://sts.windows.net/{TENANT}/",  # v1.0 token issuer
    f"{ENTRA_LOGIN}/{TENANT}/v2.0/",
    f"{ENTRA_LOGIN}/consumers/v2.0",  # personal accounts only
    f"http://login.microsoftonline.com/{TENANT}/v2.0",
])
def test_other_issuers_are_refused(issuer: str) -> None:
    with pytest.raises(ValueError, match="Entra issuer"):
        parse_issuer(issuer)


def test_allowed_tenants() -> None:
    single, multi_tenant = parse_issuer(SINGLE), parse_issuer(MULTI)
    assert allowed_tenants(single, []) == {TENANT}
    assert allowed_tenants(single, [TENANT.upper()]) == {TENANT}
    assert allowed_tenants(multi_tenant, [TENANT, OTHER_TENANT.upper()]) == {TENANT, OTHER_TENANT}
    with pytest.raises(ValueError, match="needs the list"):
        allowed_tenants(multi_tenant, [])  # never "any tenant in the world"
    with pytest.raises(ValueError, match="only its own tenant"):
        allowed_tenants(single, [OTHER_TENANT])
    with pytest.raises(ValueError, match="not a tenant id"):
        allowed_tenants(multi_tenant, ["contoso.onmicrosoft.com"])


def test_a_multi_tenant_connector_without_allowed_tenants_does_not_start() -> None:
    with pytest.raises(ValueError, match="allowed_tenants"):
        EntraConnector(IdpSettings(id="entra", type="entra", issuer=MULTI, client_id="c"),
                       redirect_uri="https://b/cb", http=httpx.AsyncClient())


# ---------------------------------------------------------------- single tenant


async def test_single_tenant_login(connector: EntraConnector) -> None:
    identity = await log_in(connector)
    assert identity.subject == ALICE_OID  # oid, not the pairwise sub
    assert identity.email == "alice@contoso.example"  # from preferred_username
    assert identity.email_verified is None  # Entra verifies no email claim
    assert identity.name == "Alice Anders"
    assert identity.groups == ("engineering", EVERYONE_ID)  # mapped; unmapped ids pass through
    assert identity.claims["tid"] == TENANT


async def test_email_claim_wins_and_is_never_verified(idp: FakeIdp, connector: EntraConnector) -> None:
    idp.claim_changes |= {"email": "alice@mail.example", "email_verified": True}
    identity = await log_in(connector)
    assert (identity.email, identity.email_verified) == ("alice@mail.example", None)


async def test_email_falls_back_to_upn_and_skips_non_addresses(idp: FakeIdp, connector: EntraConnector) -> None:
    idp.claim_changes |= {"preferred_username": "+15551234567", "upn": "alice@contoso.example"}
    assert (await log_in(connector)).email == "alice@contoso.example"
    idp.claim_changes["upn"] = DROP
    assert (await log_in(connector)).email is None


async def test_subject_and_email_claims_can_be_configured(idp: FakeIdp, http: httpx.AsyncClient) -> None:
    idp.claim_changes["upn"] = "alice@upn.example"
    identity = await log_in(entra(idp, http, claims={"subject": "sub", "email": "upn"}))
    assert (identity.subject, identity.email) == (idp.claims()["sub"], "alice@upn.example")


async def test_an_id_token_without_oid_is_refused(idp: FakeIdp, connector: EntraConnector) -> None:
    idp.claim_changes["oid"] = DROP
    with pytest.raises(InvalidIdToken, match="no oid"):
        await log_in(connector)


@pytest.mark.parametrize("tid", [DROP, "", 7, "not-a-guid", TENANT.upper()])
async def test_an_id_token_without_a_valid_tid_is_refused(idp: FakeIdp, connector: EntraConnector, tid: Any) -> None:
    idp.claim_changes["tid"] = tid
    with pytest.raises(InvalidIdToken, match="tenant id"):
        await log_in(connector)


async def test_a_token_of_another_tenant_is_refused(idp: FakeIdp, connector: EntraConnector) -> None:
    idp.claim_changes |= {"tid": OTHER_TENANT, "iss": f"{ENTRA_LOGIN}/{OTHER_TENANT}/v2.0"}
    with pytest.raises(InvalidIdToken, match="issuer"):
        await log_in(connector)


async def test_tid_must_match_the_single_tenant(idp: FakeIdp, connector: EntraConnector) -> None:
    idp.claim_changes["tid"] = OTHER_TENANT  # iss still names the configured tenant
    with pytest.raises(InvalidIdToken, match=r"tenant \(tid\) is not allowed"):
        await log_in(connector)


# ---------------------------------------------------------------- multi tenant


async def test_multi_tenant_discovery_uses_the_issuer_template(multi: EntraConnector) -> None:
    metadata = await multi.metadata()
    assert metadata.issuer == f"{ENTRA_LOGIN}/{{tenantid}}/v2.0"
    assert metadata.token_endpoint == f"{ENTRA_LOGIN}/organizations/oauth2/v2.0/token"


@pytest.mark.parametrize("issuer", [f"{ENTRA_LOGIN}/{TENANT}/v2.0", "https://evil.example/{tenantid}/v2.0",
                                    f"{ENTRA_LOGIN}/{{tenantid}}/v2.0/", "https://login.microsoftonline.com"])
async def test_multi_tenant_discovery_with_another_issuer_is_refused(multi_idp: FakeIdp, multi: EntraConnector,
                                                                     issuer: str) -> None:
    multi_idp.discovery["issuer"] = issuer
    with pytest.raises(UpstreamUnavailable, match="different issuer"):
        await multi.metadata()


@pytest.mark.parametrize("tenant", [TENANT, OTHER_TENANT])
async def test_users_of_each_allowed_tenant_sign_in(multi_idp: FakeIdp, multi: EntraConnector, tenant: str) -> None:
    multi_idp.claim_changes |= {"tid": tenant, "iss": f"{ENTRA_LOGIN}/{tenant}/v2.0"}
    identity = await log_in(multi)
    assert (identity.subject, identity.claims["tid"]) == (ALICE_OID, tenant)


async def test_a_tenant_not_allowed_is_refused(multi_idp: FakeIdp, multi: EntraConnector) -> None:
    stranger = "44444444-5555-4666-8777-888888888888"
    multi_idp.claim_changes |= {"tid": stranger, "iss": f"{ENTRA_LOGIN}/{stranger}/v2.0"}
    with pytest.raises(InvalidIdToken, match=r"tenant \(tid\) is not allowed"):
        await log_in(multi)


@pytest.mark.parametrize("iss", [f"{ENTRA_LOGIN}/{OTHER_TENANT}/v2.0", f"{ENTRA_LOGIN}/{{tenantid}}/v2.0",
                                 f"{ENTRA_LOGIN}/organizations/v2.0", f"https://sts.windows.net/{TENANT}/"])
async def test_iss_must_be_the_template_with_the_tokens_tid(multi_idp: FakeIdp, multi: EntraConnector,
                                                            iss: str) -> None:
    multi_idp.claim_changes |= {"tid": TENANT, "iss": iss}  # both tenants are allowed; they must still agree
    with pytest.raises(InvalidIdToken, match="issuer"):
        await log_in(multi)


async def test_multi_tenant_callback_without_iss(multi: EntraConnector) -> None:
    await multi.check_response_issuer(None)  # Entra does not advertise RFC 9207
    with pytest.raises(IssuerMismatch):
        await multi.check_response_issuer(f"{ENTRA_LOGIN}/44444444-5555-4666-8777-888888888888/v2.0")


async def test_multi_tenant_callback_iss_names_an_allowed_tenant(multi_idp: FakeIdp, multi: EntraConnector) -> None:
    multi_idp.discovery["authorization_response_iss_parameter_supported"] = True
    await multi.check_response_issuer(f"{ENTRA_LOGIN}/{OTHER_TENANT}/v2.0")
    for iss in (None, f"{ENTRA_LOGIN}/44444444-5555-4666-8777-888888888888/v2.0",
                f"{ENTRA_LOGIN}/{{tenantid}}/v2.0", "https://acme.okta.com/oauth2/default"):
        with pytest.raises(IssuerMismatch):
            await multi.check_response_issuer(iss)


# ---------------------------------------------------------------- groups and overage


async def test_a_non_guid_group_entry_passes_through(idp: FakeIdp, connector: EntraConnector) -> None:
    idp.claim_changes["groups"] = [SALES_ID, "Domain Users", ENGINEERING_ID.upper()]  # ids are case-insensitive
    assert (await log_in(connector)).groups == ("sales", "Domain Users", "engineering")


@pytest.mark.parametrize("marker", [overage_claims(), {"groups": DROP, "hasgroups": True}])
async def test_group_overage_asks_the_directory(idp: FakeIdp, http: httpx.AsyncClient,
                                                marker: dict[str, Any]) -> None:
    directory = FakeGroupDirectory({ALICE_OID: [SALES_ID, "55555555-aaaa-4bbb-8ccc-000000000005", SALES_ID]})
    idp.claim_changes |= marker
    identity = await log_in(entra(idp, http, directory=directory))
    assert directory.calls == [(TENANT, ALICE_OID)]
    assert identity.groups == ("sales", "55555555-aaaa-4bbb-8ccc-000000000005")


async def test_no_directory_call_without_overage(idp: FakeIdp, http: httpx.AsyncClient) -> None:
    directory = FakeGroupDirectory()
    idp.claim_changes |= {"_claim_names": {"roles": "src1"}, "hasgroups": "true"}  # neither means overage
    await log_in(entra(idp, http, directory=directory))
    assert directory.calls == []


async def test_overage_in_the_users_own_tenant(multi_idp: FakeIdp, graph: FakeGraph) -> None:
    directory = FakeGroupDirectory({ALICE_OID: [ENGINEERING_ID]})
    multi_idp.claim_changes |= {"tid": OTHER_TENANT, "iss": f"{ENTRA_LOGIN}/{OTHER_TENANT}/v2.0",
                                **overage_claims(OTHER_TENANT)}
    async with entra_client(multi_idp, graph) as client:
        connector = entra(multi_idp, client, directory=directory, entra={"allowed_tenants": [OTHER_TENANT]})
        assert (await log_in(connector)).groups == ("engineering",)
    assert directory.calls == [(OTHER_TENANT, ALICE_OID)]


async def test_a_failing_directory_fails_the_login(idp: FakeIdp, http: httpx.AsyncClient) -> None:
    idp.claim_changes |= overage_claims()
    directory = FakeGroupDirectory(failure=UpstreamUnavailable("Microsoft Graph group lookup failed (HTTP 503)"))
    with pytest.raises(UpstreamUnavailable):
        await log_in(entra(idp, http, directory=directory))


async def test_the_token_cannot_choose_the_graph_endpoint(idp: FakeIdp, connector: EntraConnector,
                                                          graph: FakeGraph) -> None:
    idp.claim_changes |= overage_claims()
    identity = await log_in(connector)  # the default directory: Graph on the connector's HTTP client
    assert identity.groups == ("engineering", "sales")
    assert {r.url.host for r in graph.requests} == {"login.microsoftonline.com", "graph.microsoft.com"}
    assert not [r for r in idp.requests + graph.requests if "graph.windows.net" in str(r.url)]


# ---------------------------------------------------------------- Microsoft Graph


def directory(http: httpx.AsyncClient, *, secret: str | None = CLIENT_SECRET, clock: Any = None,
              graph_endpoint: str = GRAPH) -> GraphGroupDirectory:
    return GraphGroupDirectory(http, idp_id="entra", issuer=parse_issuer(MULTI), client_id=CLIENT_ID,
                               client_secret=secret, graph_endpoint=graph_endpoint, clock=clock or FakeClock(NOW))


def form_of(request: httpx.Request) -> dict[str, str]:
    return dict(httpx.QueryParams(request.content.decode()))


async def test_graph_lookup_with_an_app_token_of_the_users_tenant(http: httpx.AsyncClient, graph: FakeGraph) -> None:
    groups = await directory(http).member_groups(OTHER_TENANT, ALICE_OID)
    assert groups == [ENGINEERING_ID, SALES_ID]
    token_request, lookup = graph.requests
    assert str(token_request.url) == f"{ENTRA_LOGIN}/{OTHER_TENANT}/oauth2/v2.0/token"
    assert form_of(token_request) == {"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                      "client_secret": CLIENT_SECRET, "scope": f"{GRAPH}/.default"}
    assert (lookup.method, str(lookup.url)) == ("POST", f"{GRAPH}/v1.0/users/{ALICE_OID}/getMemberObjects")
    assert lookup.headers["authorization"] == f"Bearer {graph.issued[0]}"
    assert json.loads(lookup.content) == {"securityEnabledOnly": False}


async def test_graph_pages_are_followed(http: httpx.AsyncClient, graph: FakeGraph) -> None:
    graph.member_objects[ALICE_OID] = [f"{i:08d}-aaaa-4bbb-8ccc-000000000000" for i in range(7)]
    graph.page_size = 3
    assert await directory(http).member_groups(TENANT, ALICE_OID) == graph.member_objects[ALICE_OID]
    assert [r.method for r in graph.requests] == ["POST", "POST", "GET", "GET"]


async def test_graph_app_tokens_are_reused_per_tenant_until_they_expire(http: httpx.AsyncClient,
                                                                       graph: FakeGraph) -> None:
    clock = FakeClock(NOW)
    graph_directory = directory(http, clock=clock)
    for tenant in (TENANT, TENANT, OTHER_TENANT, TENANT):
        await graph_directory.member_groups(tenant, ALICE_OID)
    assert len(graph.token_requests()) == 2
    clock.advance(3599 - 60)
    await graph_directory.member_groups(TENANT, ALICE_OID)
    assert len(graph.token_requests()) == 3


GRAPH_FAILURES = {
    "forbidden": (403, {"error": {"code": "Authorization_RequestDenied",
                                  "message": "Insufficient privileges to complete the operation."}}),
    "throttled": (429, {"error": {"code": "TooManyRequests", "message": "slow down"}}),
    "not found": (404, {"error": {"code": "Request_ResourceNotFound", "message": "gone"}}),
    "no value": (200, {"values": []}),
    "not json": (200, None),
}


@pytest.mark.parametrize("failure", list(GRAPH_FAILURES))
async def test_graph_failures_are_unavailable(http: httpx.AsyncClient, graph: FakeGraph, failure: str) -> None:
    graph.status, graph.body = GRAPH_FAILURES[failure]
    if graph.body is None:
        graph.body = "<html>"
    with pytest.raises(UpstreamUnavailable) as unavailable:
        await directory(http).member_groups(TENANT, ALICE_OID)
    if failure == "forbidden":
        assert "GroupMember.Read.All" in unavailable.value.description
    assert "Insufficient privileges" not in unavailable.value.description


async def test_graph_token_refused_is_unavailable(http: httpx.AsyncClient, graph: FakeGraph) -> None:
    graph.token_status, graph.token_body = 401, {"error": "invalid_client",
                                                 "error_description": "AADSTS7000215: Invalid client secret provided."}
    with pytest.raises(UpstreamUnavailable, match="invalid_client") as unavailable:
        await directory(http).member_groups(TENANT, ALICE_OID)
    assert "AADSTS" not in unavailable.value.description


async def test_graph_needs_the_client_secret(http: httpx.AsyncClient, graph: FakeGraph) -> None:
    with pytest.raises(UpstreamUnavailable, match="client_secret"):
        await directory(http, secret=None).member_groups(TENANT, ALICE_OID)
    assert graph.requests == []


async def test_graph_next_link_elsewhere_is_not_followed(http: httpx.AsyncClient, graph: FakeGraph) -> None:
    graph.body = {"value": [SALES_ID], "@odata.nextLink": "https://evil.example/v1.0/steal"}
    with pytest.raises(UpstreamUnavailable, match="elsewhere"):
        await directory(http).member_groups(TENANT, ALICE_OID)
    assert all(r.url.host != "evil.example" for r in graph.requests)


@pytest.mark.parametrize("tenant,oid", [("../../v1.0/me", ALICE_OID), (TENANT, "x/../../admin")])
async def test_graph_ids_must_be_guids(http: httpx.AsyncClient, graph: FakeGraph, tenant: str, oid: str) -> None:
    with pytest.raises(UpstreamUnavailable, match="GUID"):
        await directory(http).member_groups(tenant, oid)
    assert graph.requests == []


async def test_graph_timeout_is_unavailable(http: httpx.AsyncClient) -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    async with httpx.AsyncClient(transport=httpx.MockTransport(never)) as slow:
        with pytest.raises(UpstreamUnavailable, match="could not be reached"):
            await directory(slow).member_groups(TENANT, ALICE_OID)


async def test_graph_never_logs_the_secret_or_tokens(http: httpx.AsyncClient, graph: FakeGraph,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    graph_directory = directory(http)
    await graph_directory.member_groups(TENANT, ALICE_OID)
    graph.status, graph.body = 403, {"error": {"code": "Authorization_RequestDenied"}}
    with pytest.raises(UpstreamUnavailable):
        await graph_directory.member_groups(TENANT, ALICE_OID)
    logged = caplog.text + " ".join(str(vars(record)) for record in caplog.records)
    for secret in (CLIENT_SECRET, *graph.issued):
        assert secret not in logged
    assert CLIENT_SECRET not in repr(graph_directory)


@pytest.mark.parametrize("extra", [{}, overage_claims()], ids=["groups", "group overage"])
async def test_any_claim_of_the_wrong_type_is_refused_or_ignored_never_a_crash(idp: FakeIdp,
                                                                                connector: EntraConnector,
                                                                                extra: dict) -> None:
    """Every claim the Entra connector reads (oid, tid, groups, the overage pointers, xms_edov, the email
    claims) in each wrong JSON type: ``InvalidIdToken`` or an identity without it, no other exception."""
    idp.claim_changes |= {"email": "alice@contoso.example", "xms_edov": True, "upn": "alice@contoso.example",
                          **extra}
    genuine = idp.claims()
    problems, tried = [], 0
    for name, case, variant in wrong_claims(genuine):
        idp.id_token = signed(variant, idp.key.private_key, idp.key.alg, {"kid": idp.key.kid, "typ": "JWT"})
        tried += 1
        try:
            await log_in(connector)
        except (InvalidIdToken, UpstreamUnavailable):
            continue
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
            problems.append(f"{name} {case}: {type(exc).__name__}: {str(exc)[:80]}")
            continue
        if name in ("iss", "sub", "aud", "exp", "iat", "nonce", "oid", "tid"):
            problems.append(f"{name} {case}: accepted")
    assert tried > 150 and not problems, "\n".join(problems)
