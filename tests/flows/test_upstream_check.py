"""check_upstream_on_refresh: a refresh at the broker first refreshes at the IdP."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from broker.federation.errors import UpstreamRejected, UpstreamUnavailable
from broker.storage.models import UpstreamIdentity, User
from tests.conftest import ISSUER, TEST_USERS, TESTIDP_CLIENT
from tests.support.oauth_flow import refresh, register_client, tokens_for


@pytest.fixture
def settings(make_settings):
    idp = {"id": "test", "type": "test", "issuer": f"{ISSUER}/testidp", "client_id": TESTIDP_CLIENT["client_id"],
           "client_secret": TESTIDP_CLIENT["client_secret"], "check_upstream_on_refresh": True,
           "scopes": ["openid", "email", "profile", "offline_access"]}
    return make_settings(idps=[idp], testidp={"enabled": True, "users": TEST_USERS, "clients": [TESTIDP_CLIENT]})


def stored_upstream_token(state) -> bytes | None:
    with state.database.sessions() as session:
        return session.scalars(select(UpstreamIdentity)).one().refresh_token_encrypted


async def test_refresh_renews_upstream_first(client: httpx.AsyncClient, state) -> None:
    app_client = register_client(state, trusted=True)
    body = await tokens_for(client, app_client.row.id)
    first = stored_upstream_token(state)
    assert first is not None  # the IdP's refresh token, encrypted
    response = await refresh(client, app_client.row.id, body["refresh_token"])
    assert response.status_code == 200, response.text
    assert stored_upstream_token(state) != first  # the test IdP rotated it, and the broker kept the new one


async def test_refusal_upstream_ends_the_sessions(client: httpx.AsyncClient, state) -> None:
    app_client = register_client(state, trusted=True)
    body = await tokens_for(client, app_client.row.id)

    async def refused(token: str) -> str:
        raise UpstreamRejected("the IdP refused", upstream_error="invalid_grant")

    state.oauth.connectors["test"].refresh = refused
    response = await refresh(client, app_client.row.id, body["refresh_token"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    with state.database.sessions() as session:
        user = session.scalars(select(User)).one()
    assert user.not_before is not None and user.status == "active"
    state.oauth.connectors["test"].refresh = None  # no second upstream call: the family is already dead
    again = await refresh(client, app_client.row.id, body["refresh_token"])
    assert again.json()["error"] == "invalid_grant"


async def test_idp_outage_fails_the_refresh_without_ending_anything(client: httpx.AsyncClient, state) -> None:
    app_client = register_client(state, trusted=True)
    body = await tokens_for(client, app_client.row.id)

    async def down(token: str) -> str:
        raise UpstreamUnavailable("timeout")

    real = state.oauth.connectors["test"].refresh
    state.oauth.connectors["test"].refresh = down
    response = await refresh(client, app_client.row.id, body["refresh_token"])
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    state.oauth.connectors["test"].refresh = real
    assert (await refresh(client, app_client.row.id, body["refresh_token"])).status_code == 200
