"""Okta and Entra ID connectors inside the broker, in-process: the broker's outgoing HTTP goes to the
Okta- and Entra-shaped fakes of ``tests/support/fake_idps.py`` (real host names, routed by host), the
test plays the browser and the MCP client. Upstream mix-up and error cases end at the client's
redirect URI with ``access_denied``/``temporarily_unavailable`` and ``iss``, and store nothing."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from broker.storage.models import Group, GroupMembership, UpstreamIdentity, User
from tests.conftest import ISSUER
from tests.support.fake_idps import FakeClient, FakeEntra, FakeOkta, FakeUser, HostRouter
from tests.support.oauth_flow import CLIENT_REDIRECT, authorize_params, exchange, hidden_fields, pkce, register_client

OKTA = "https://acme.okta.com"
ENTRA = "https://login.microsoftonline.com"
GRAPH = "https://graph.microsoft.com"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ENGINEERING, SUPPORT = "e0000000-0000-4000-8000-000000000001", "e0000000-0000-4000-8000-000000000002"
MANY = [ENGINEERING, *(f"e0000000-0000-4000-8000-{i:012d}" for i in range(3, 240))]


class Upstreams(HostRouter):
    """The broker's outgoing HTTP (conftest's ``loopback``): Okta, Entra and Graph hosts, and the broker."""

    def __init__(self) -> None:
        self.okta = FakeOkta(OKTA, [
            FakeUser("alice@okta.example", "00u1alice", "alice@okta.example", "Alice Okta", ["engineering"]),
            FakeUser("una@okta.example", "00u2una", "una@okta.example", "Una Unassigned", assigned=False)],
            [FakeClient("okta-client", "okta-secret", [f"{ISSUER}/callback/okta"])])
        self.entra = FakeEntra(ENTRA, [
            FakeUser("bob@entra.example", "0b0b0b0b-0000-4000-8000-000000000001", "bob@entra.example", "Bob Entra",
                     [ENGINEERING, SUPPORT], tenant=TENANT),
            FakeUser("olga@entra.example", "0b0b0b0b-0000-4000-8000-000000000002", "olga@entra.example",
                     "Olga Overage", MANY, tenant=TENANT, overage=True)],
            [FakeClient("entra-client", "entra-secret", [f"{ISSUER}/callback/entra"])], graph_endpoint=GRAPH)
        super().__init__({"acme.okta.com": self.okta.app, "login.microsoftonline.com": self.entra.app,
                          "graph.microsoft.com": self.entra.app})


IDPS = [{"id": "okta", "type": "okta", "display_name": "Okta", "issuer": f"{OKTA}/oauth2/default",
         "client_id": "okta-client", "client_secret": "okta-secret", "email_domains": ["okta.example"],
         "scopes": ["openid", "email", "profile", "groups"]},
        {"id": "entra", "type": "entra", "display_name": "Entra ID", "issuer": f"{ENTRA}/{TENANT}/v2.0",
         "client_id": "entra-client", "client_secret": "entra-secret", "email_domains": ["entra.example"],
         "entra": {"group_names": {ENGINEERING: "engineering"}, "graph_endpoint": GRAPH}}]


@pytest.fixture
def loopback() -> Upstreams:
    return Upstreams()


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(idps=IDPS)


@pytest.fixture
async def upstream_browser(loopback: Upstreams) -> Any:
    async with httpx.AsyncClient(transport=loopback) as http:
        yield http


async def sign_in(client: httpx.AsyncClient, upstream: httpx.AsyncClient, client_id: str, challenge: str,
                  login_hint: str, *, tamper: Any = None) -> dict[str, str]:
    """The browser's trip from /authorize through the IdP and consent back to the client's redirect URI."""
    response = await client.get("/authorize?" + urlencode(authorize_params(client_id, challenge,
                                                                           login_hint=login_hint)))
    location = response.headers["location"]
    for _ in range(6):
        if location.startswith(CLIENT_REDIRECT):
            return dict(httpx.URL(location).params)
        if location.startswith(ISSUER + "/callback/") and tamper is not None:
            location = tamper(location)
        response = await _follow(client, upstream, location)
        location = response.headers.get("location") or ""
    raise AssertionError(f"the flow did not reach the client: {response.status_code} {response.text[:300]}")


async def _follow(client: httpx.AsyncClient, upstream: httpx.AsyncClient, location: str) -> httpx.Response:
    if location.startswith(("/consent", ISSUER + "/consent")):
        page = await client.get(location.removeprefix(ISSUER))
        return await client.post("/consent", data={**hidden_fields(page.text), "decision": "approve"})
    if location.startswith(ISSUER):
        return await client.get(location.removeprefix(ISSUER))
    assert urlsplit(location).hostname in ("acme.okta.com", "login.microsoftonline.com"), location
    return await upstream.get(location)


def groups_of(state: Any, idp_id: str, subject: str) -> list[str]:
    with state.database.sessions() as session:
        user_id = session.scalar(select(UpstreamIdentity.user_id).where(UpstreamIdentity.idp_id == idp_id,
                                                                        UpstreamIdentity.subject == subject))
        query = (select(Group.name).join(GroupMembership, GroupMembership.group_id == Group.id)
                 .where(GroupMembership.user_id == user_id, Group.source == f"idp:{idp_id}").order_by(Group.name))
        return list(session.scalars(query))


def user_count(state: Any) -> int:
    with state.database.sessions() as session:
        return session.scalar(select(func.count()).select_from(User))


async def log_in(client: httpx.AsyncClient, upstream: httpx.AsyncClient, state: Any, login_hint: str,
                 **kwargs: Any) -> dict[str, Any]:
    new = register_client(state)
    verifier, challenge = pkce()
    redirect = await sign_in(client, upstream, new.row.id, challenge, login_hint, **kwargs)
    if "code" not in redirect:
        return redirect
    response = await exchange(client, new.row.id, redirect["code"], verifier)
    assert response.status_code == 200, response.text
    return response.json()


# ---------------------------------------------------------------- logins


async def test_okta_user_signs_in_with_okta_groups(client: httpx.AsyncClient, upstream_browser: httpx.AsyncClient,
                                                   state: Any, loopback: Upstreams) -> None:
    tokens = await log_in(client, upstream_browser, state, "alice@okta.example")
    assert tokens["token_type"].lower() == "bearer"
    assert groups_of(state, "okta", "00u1alice") == ["engineering"]
    assert loopback.okta.requests.count("GET /oauth2/default/v1/authorize") == 1
    assert loopback.okta.token_requests[0]["grant_type"] == "authorization_code"
    assert "resource" not in loopback.okta.token_requests[0]  # never forwarded upstream


async def test_entra_user_signs_in_with_mapped_group_ids(client: httpx.AsyncClient,
                                                         upstream_browser: httpx.AsyncClient, state: Any) -> None:
    await log_in(client, upstream_browser, state, "bob@entra.example")
    assert groups_of(state, "entra", "0b0b0b0b-0000-4000-8000-000000000001") == [SUPPORT, "engineering"]


async def test_entra_group_overage_is_resolved_through_graph(client: httpx.AsyncClient,
                                                             upstream_browser: httpx.AsyncClient, state: Any,
                                                             loopback: Upstreams) -> None:
    loopback.entra.graph_page_size = 100
    await log_in(client, upstream_browser, state, "olga@entra.example")
    groups = groups_of(state, "entra", "0b0b0b0b-0000-4000-8000-000000000002")
    assert len(groups) == len(MANY) and "engineering" in groups and ENGINEERING not in groups
    graph_calls = [r for r in loopback.entra.requests if "/getMemberObjects" in r]
    path = "/v1.0/users/0b0b0b0b-0000-4000-8000-000000000002/getMemberObjects"
    assert graph_calls == [f"POST {path}", f"GET {path}", f"GET {path}"]  # two more pages of 100


# ---------------------------------------------------------------- upstream errors


async def test_okta_unassigned_user_is_access_denied(client: httpx.AsyncClient, upstream_browser: httpx.AsyncClient,
                                                     state: Any) -> None:
    redirect = await log_in(client, upstream_browser, state, "una@okta.example")
    assert (redirect["error"], redirect["iss"]) == ("access_denied", ISSUER)
    assert "not assigned" not in redirect.get("error_description", "")  # Okta's words stay upstream
    assert user_count(state) == 0


async def test_okta_rate_limit_is_temporarily_unavailable(client: httpx.AsyncClient,
                                                          upstream_browser: httpx.AsyncClient, state: Any,
                                                          loopback: Upstreams) -> None:
    loopback.okta.api_error = (429, "E0000047", "API call exceeded rate limit due to too many requests.")
    redirect = await log_in(client, upstream_browser, state, "alice@okta.example")
    assert (redirect["error"], redirect["iss"]) == ("temporarily_unavailable", ISSUER)
    assert user_count(state) == 0


async def test_graph_refusal_is_temporarily_unavailable(client: httpx.AsyncClient,
                                                        upstream_browser: httpx.AsyncClient, state: Any,
                                                        loopback: Upstreams) -> None:
    loopback.entra.graph_status = 403
    redirect = await log_in(client, upstream_browser, state, "olga@entra.example")
    assert (redirect["error"], redirect["iss"]) == ("temporarily_unavailable", ISSUER)
    assert user_count(state) == 0


# ---------------------------------------------------------------- upstream mix-up


async def test_callback_iss_naming_another_issuer_is_refused(client: httpx.AsyncClient,
                                                             upstream_browser: httpx.AsyncClient, state: Any,
                                                             loopback: Upstreams) -> None:
    """RFC 9207 at the upstream side: Okta's callback saying it came from Entra is a mix-up."""
    def claim_entra(location: str) -> str:
        url = httpx.URL(location)
        return str(url.copy_set_param("iss", f"{ENTRA}/{TENANT}/v2.0"))

    redirect = await log_in(client, upstream_browser, state, "alice@okta.example", tamper=claim_entra)
    assert (redirect["error"], redirect["iss"]) == ("access_denied", ISSUER)
    assert loopback.okta.token_requests == []  # the code never went anywhere
    assert user_count(state) == 0


async def test_an_id_token_of_another_idp_is_refused(client: httpx.AsyncClient, upstream_browser: httpx.AsyncClient,
                                                     state: Any, loopback: Upstreams,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Entra's token endpoint hands back an ID token Okta signed (for the right client and nonce)."""
    okta, entra = loopback.okta, loopback.entra

    def okta_token_for_entra(code: Any) -> dict[str, Any]:
        return {**okta.id_token_claims(code), "iss": okta.issuer, "tid": TENANT, "oid": code.user.subject}

    entra.id_token_claims = okta_token_for_entra  # type: ignore[method-assign]
    entra.sign = okta.sign  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="broker.federation"):
        redirect = await log_in(client, upstream_browser, state, "bob@entra.example")
    assert (redirect["error"], redirect["iss"]) == ("access_denied", ISSUER)
    assert [r.reason for r in caplog.records if r.getMessage() == "upstream ID token rejected"] == [
        "the ID token was signed with a key the identity provider does not publish"]
    assert user_count(state) == 0
