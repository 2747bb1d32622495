"""Several upstream IdPs: routing by login_hint domain, the picker page, and account linking."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import func, select

from broker.storage.models import AuditEvent, UpstreamIdentity, User
from tests.conftest import ISSUER, TEST_USERS, TESTIDP_CLIENT
from tests.support.oauth_flow import (
    authorize,
    authorize_params,
    exchange,
    local,
    pkce,
    query,
    register_client,
    sign_in_upstream,
)

CORP_CLIENT = {"client_id": "broker-corp", "client_secret": "corp-secret", "redirect_uris": [f"{ISSUER}/callback/corp"]}


def two_idps(link: bool = False) -> dict:
    test_idp = {"id": "test", "type": "test", "display_name": "Example Inc.", "issuer": f"{ISSUER}/testidp",
                "client_id": TESTIDP_CLIENT["client_id"], "client_secret": TESTIDP_CLIENT["client_secret"],
                "email_domains": ["example.com"]}
    corp = {"id": "corp", "type": "test", "display_name": "Corp Ltd.", "issuer": f"{ISSUER}/testidp",
            "client_id": CORP_CLIENT["client_id"], "client_secret": CORP_CLIENT["client_secret"],
            "email_domains": ["corp.example"]}
    return {"idps": [test_idp, corp], "federation": {"link_by_verified_email": ["test", "corp"] if link else []}}


@pytest.fixture
def link() -> bool:
    return False


@pytest.fixture
def admin() -> dict:
    return {}


@pytest.fixture
def settings(make_settings, link: bool, admin: dict):
    raw = two_idps(link)
    console = [f"{ISSUER}/admin/callback/test", f"{ISSUER}/admin/callback/corp"]
    clients = [{**c, "redirect_uris": [*c["redirect_uris"], uri]} for c, uri in zip((TESTIDP_CLIENT, CORP_CLIENT),
                                                                                   console, strict=True)]
    return make_settings(idps=raw["idps"], federation=raw["federation"], admin=admin,
                         testidp={"enabled": True, "users": TEST_USERS, "clients": clients})


async def test_without_a_hint_the_user_picks(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    response = await client.get("/authorize?" + urlencode(authorize_params(new.row.id, pkce()[1])))
    assert response.status_code == 302 and response.headers["location"].startswith("/authorize/choose?pending=")
    page = await client.get(response.headers["location"])
    assert "Example Inc." in page.text and "Corp Ltd." in page.text
    pending = query(response.headers["location"])["pending"]
    chosen = await client.get(f"/authorize/choose?pending={pending}&idp=corp")
    upstream = query(chosen.headers["location"])
    assert upstream["client_id"] == "broker-corp" and "resource" not in upstream


async def test_login_hint_domain_routes_directly(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    response = await client.get("/authorize?" + urlencode(authorize_params(new.row.id, pkce()[1],
                                                                           login_hint="alice@corp.example")))
    upstream = query(response.headers["location"])
    assert response.headers["location"].startswith(f"{ISSUER}/testidp/authorize")
    assert upstream["client_id"] == "broker-corp" and upstream["login_hint"] == "alice@corp.example"


async def test_typed_email_routes_and_unknown_domain_asks_again(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    response = await client.get("/authorize?" + urlencode(authorize_params(new.row.id, pkce()[1])))
    pending = query(response.headers["location"])["pending"]
    unknown = await client.get(f"/authorize/choose?pending={pending}&email=bob@elsewhere.example")
    assert unknown.status_code == 200 and "No identity provider serves that email domain" in unknown.text
    routed = await client.get(f"/authorize/choose?pending={pending}&email=bob@example.com")
    assert query(routed.headers["location"])["client_id"] == TESTIDP_CLIENT["client_id"]
    reused = await client.get(f"/authorize/choose?pending={pending}&idp=corp")
    assert reused.status_code == 400  # a pending request goes upstream once


async def test_a_picker_link_from_another_browser_is_refused(app, state) -> None:
    new = register_client(state)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as mine, \
            httpx.AsyncClient(transport=transport, base_url=ISSUER) as other:
        response = await mine.get("/authorize?" + urlencode(authorize_params(new.row.id, pkce()[1])))
        stolen = await other.get(response.headers["location"] + "&idp=corp")
    assert stolen.status_code == 403


async def sign_in_via(client: httpx.AsyncClient, state, idp: str) -> None:
    new = register_client(state, trusted=True)
    verifier, challenge = pkce()
    domain = "corp.example" if idp == "corp" else "example.com"
    redirect = await authorize(client, new.row.id, challenge, login_hint=f"alice@{domain}")
    assert (await exchange(client, new.row.id, redirect["code"], verifier)).status_code == 200


def user_count(state) -> int:
    with state.database.sessions() as session:
        return session.scalar(select(func.count()).select_from(User))


async def test_two_idps_never_merge_accounts_by_email(client: httpx.AsyncClient, state) -> None:
    await sign_in_via(client, state, "test")
    await sign_in_via(client, state, "corp")
    assert user_count(state) == 2  # same email, two IdPs, two people as far as the broker knows


@pytest.mark.parametrize("link", [True])
async def test_linked_idps_share_a_user_by_verified_email(client: httpx.AsyncClient, state) -> None:
    await sign_in_via(client, state, "test")
    await sign_in_via(client, state, "corp")
    assert user_count(state) == 1
    with state.database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(UpstreamIdentity)) == 2


async def test_callback_of_one_idp_cannot_finish_anothers_login(client: httpx.AsyncClient, state) -> None:
    """An authorization response from IdP A delivered to IdP B's callback is refused (mix-up)."""
    new = register_client(state)
    response = await client.get("/authorize?" + urlencode(authorize_params(new.row.id, pkce()[1],
                                                                           login_hint="alice@example.com")))
    callback = await sign_in_upstream(client, response.headers["location"], "alice")
    wrong = local(callback.headers["location"]).replace("/callback/test", "/callback/corp")
    refused = await client.get(wrong)
    assert refused.status_code == 400 and "location" not in refused.headers


async def console_sign_in(http: httpx.AsyncClient, idp: str, username: str) -> httpx.Response:
    start = await http.get(f"/admin/login?idp={idp}")
    assert start.status_code == 302, start.text
    back = await sign_in_upstream(http, start.headers["location"], username)
    return await http.get(local(back.headers["location"]))


@pytest.mark.parametrize("admin", [{"admin_groups": ["it-admins"], "idps": ["test"]}])
async def test_only_the_idps_named_for_the_console_give_console_roles(client: httpx.AsyncClient, state) -> None:
    """carol is in it-admins at both IdPs; only test speaks for console roles, so corp's it-admins (a partner's
    IdP could send any group name) gives nothing."""
    refused = await console_sign_in(client, "corp", "carol")
    assert refused.status_code == 403 and "broker-admin" not in client.cookies
    signed_in = await console_sign_in(client, "test", "carol")
    assert signed_in.status_code == 200 and "broker-admin" in client.cookies
    with state.database.sessions() as session:
        refusal = session.scalar(select(AuditEvent).where(AuditEvent.event_type == "admin.login_refused"))
        assert refusal is not None and refusal.data["idp"] == "corp"
