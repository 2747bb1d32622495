"""check_upstream_on_refresh says so when it cannot run: a contradicting setting refuses to start, and a refresh
that finds no upstream refresh token for the user is logged (and, as before, not checked)."""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy import update

from broker import config
from broker.config import ConfigError
from broker.storage.models import AuditEvent, UpstreamIdentity
from tests.conftest import ISSUER, TEST_USERS, TESTIDP_CLIENT, base_settings
from tests.support.oauth_flow import refresh, register_client, tokens_for

IDP = {"id": "test", "type": "test", "issuer": f"{ISSUER}/testidp", "client_id": TESTIDP_CLIENT["client_id"],
       "client_secret": TESTIDP_CLIENT["client_secret"], "check_upstream_on_refresh": True}


@pytest.fixture
def settings(make_settings):
    return make_settings(idps=[IDP], testidp={"enabled": True, "users": TEST_USERS, "clients": [TESTIDP_CLIENT]})


def test_the_check_without_a_stored_refresh_token_is_refused_at_start() -> None:
    raw = base_settings(idps=[{**IDP, "store_refresh_token": False}])
    with pytest.raises(ConfigError, match="check_upstream_on_refresh: needs store_refresh_token = true"):
        config.load(None, env={}, defaults=raw)


async def test_the_sign_in_records_whether_the_check_can_run(client: httpx.AsyncClient, state) -> None:
    await tokens_for(client, register_client(state, trusted=True).row.id)  # asks offline_access by itself
    with state.database.sessions() as session:
        login = session.query(AuditEvent).filter(AuditEvent.event_type == "login.success").one()
    assert login.data["upstream_refresh_token"] is True


async def test_a_refresh_with_no_upstream_token_to_check_with_is_logged(client: httpx.AsyncClient, state,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    app = register_client(state, trusted=True)
    body = await tokens_for(client, app.row.id)
    with state.database.transaction() as session:
        session.execute(update(UpstreamIdentity).values(refresh_token_encrypted=None))
    with caplog.at_level(logging.WARNING, logger="broker.lifecycle"):
        response = await refresh(client, app.row.id, body["refresh_token"])
    assert response.status_code == 200
    assert "check_upstream_on_refresh cannot run for this refresh: no refresh token from IdP test" in caplog.text
