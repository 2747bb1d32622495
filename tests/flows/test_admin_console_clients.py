"""The console's client pages: each client's authentication methods, and pre-registering one as the CLI does."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy import select

from broker.storage import clients as repo
from broker.storage.models import AuditEvent
from tests.flows.test_admin_console import carol, csrf_of, settings  # noqa: F401 - the console's fixtures
from tests.support.oauth_flow import register_client

_SECRET = re.compile(r'id="client-secret">([^<]+)<')
_CLIENT_ID = re.compile(r'id="client-id">([^<]+)<')


async def test_the_client_list_shows_each_clients_methods(carol: httpx.AsyncClient, state: Any) -> None:  # noqa: F811
    register_client(state, name="Both secrets", auth_method=("client_secret_basic", "client_secret_post"),
                    redirect_uris=[], grant_types=("client_credentials",))
    page = await carol.get("/admin/clients")
    assert page.status_code == 200
    assert '<td class="auth-methods">client_secret_basic, client_secret_post</td>' in page.text


async def test_pre_registering_a_client_with_two_secret_methods(carol: httpx.AsyncClient,  # noqa: F811
                                                                state: Any) -> None:
    token = csrf_of(await carol.get("/admin/clients/new"))
    created = await carol.post("/admin/clients/new", data={
        "csrf_token": token, "name": "Agent", "method_client_secret_post": "on", "method_client_secret_basic": "on",
        "client_credentials": "on"})
    assert created.status_code == 200, created.text
    assert created.headers["cache-control"].startswith("no-store")
    client_id, secret = _CLIENT_ID.search(created.text).group(1), _SECRET.search(created.text).group(1)
    posted = await carol.post("/revoke", data={"token": "x", "client_id": client_id, "client_secret": secret})
    basic = await carol.post("/revoke", data={"token": "x"}, auth=(client_id, secret))
    assert (posted.status_code, basic.status_code) == (200, 200), (posted.text, basic.text)
    with state.database.sessions() as session:
        row = repo.get(session, client_id)
        assert (row.token_endpoint_auth_method, row.extra_auth_methods) == ("client_secret_basic",
                                                                            ["client_secret_post"])
        actors = list(session.scalars(select(AuditEvent.actor).where(AuditEvent.event_type == "client.registered",
                                                                     AuditEvent.client_id == client_id)))
    assert actors == ["console:carol@example.com"]


async def test_a_contradicting_registration_is_refused_on_the_form(carol: httpx.AsyncClient,  # noqa: F811
                                                                   state: Any) -> None:
    token = csrf_of(await carol.get("/admin/clients/new"))
    for fields, reason in (({"method_none": "on", "method_client_secret_post": "on"}, "cannot be combined"),
                           ({"method_private_key_jwt": "on", "client_credentials": "on"}, "give jwks or jwks_uri"),
                           ({"method_private_key_jwt": "on", "jwks": "{not json", "client_credentials": "on"},
                            "jwks is not valid JSON")):
        refused = await carol.post("/admin/clients/new", data={"csrf_token": token, "name": "Bad", **fields})
        assert refused.status_code == 400 and reason in refused.text, refused.text
    with state.database.sessions() as session:
        assert all(c.name != "Bad" for c in repo.list_all(session))


async def test_registering_needs_the_csrf_token(carol: httpx.AsyncClient, state: Any) -> None:  # noqa: F811
    refused = await carol.post("/admin/clients/new", data={"name": "Sneaky", "method_none": "on",
                                                           "redirect_uris": "http://127.0.0.1/cb"})
    assert refused.status_code == 403
    with state.database.sessions() as session:
        assert all(c.name != "Sneaky" for c in repo.list_all(session))
