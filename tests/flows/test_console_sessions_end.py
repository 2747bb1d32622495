"""Every way of ending a user's sessions ends their admin console session too: CAEP session-revoked, Universal
Logout (Global Token Revocation) and offboarding from any door, which a later restore does not bring back."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from broker.storage.models import AdminSession
from tests.conftest import ISSUER, TESTIDP_CLIENT
from tests.flows.test_admin_console import ADMIN, CONSOLE_USERS, sign_in
from tests.flows.test_security_signals import JWK, SESSION_REVOKED, TRANSMITTER, push, signed_set
from tests.flows.test_signal_senders import global_logout

CAROL = {"format": "iss_sub", "iss": f"{ISSUER}/testidp", "sub": "carol"}


@pytest.fixture
def settings(make_settings: Any) -> Any:
    client = {**TESTIDP_CLIENT, "redirect_uris": [*TESTIDP_CLIENT["redirect_uris"], f"{ISSUER}/admin/callback/test"]}
    sender = {"issuer": TRANSMITTER, "jwks_uri": f"{TRANSMITTER}/jwks", "idp": "test", "algorithms": ["ES256"]}
    return make_settings(testidp={"users": CONSOLE_USERS, "clients": [client]}, admin=ADMIN,
                         signals={"ssf_transmitters": [{"id": "idp-ssf", **sender}],
                                  "logout_issuers": [{"id": "idp-logout", **sender}]})


@pytest.fixture(autouse=True)
def transmitter_keys(loopback: Any) -> None:
    loopback.others["idp.example"] = lambda request: httpx.Response(200, json={"keys": [JWK]})


@pytest.fixture
async def console(app: Any) -> Any:
    """carol's browser, signed in to the console (a client of its own: the signals come from elsewhere)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as browser:
        assert (await sign_in(browser, "carol")).status_code == 200
        assert (await browser.get("/admin")).status_code == 200
        yield browser


def console_sessions_ended(state: Any) -> bool:
    with state.database.sessions() as session:
        rows = list(session.scalars(select(AdminSession)))
    return bool(rows) and all(row.ended_at is not None for row in rows)


async def test_caep_session_revoked_ends_the_console_session(client: httpx.AsyncClient, console: Any,
                                                             state: Any) -> None:
    assert (await push(client, signed_set({SESSION_REVOKED: {}}, CAROL))).status_code == 202
    assert (await console.get("/admin")).status_code == 302 and console_sessions_ended(state)


async def test_universal_logout_ends_the_console_session(client: httpx.AsyncClient, console: Any,
                                                         state: Any) -> None:
    assert (await global_logout(client, CAROL)).status_code == 204
    assert (await console.get("/admin")).status_code == 302 and console_sessions_ended(state)


async def test_offboarding_ends_the_console_session_for_good(console: Any, state: Any, cli: Any) -> None:
    assert cli(["users", "revoke", "carol@example.com", "--reason", "left"]) == 0
    assert cli(["users", "restore", "carol@example.com"]) == 0
    assert (await console.get("/admin")).status_code == 302  # restored, but the old session stays ended
    assert console_sessions_ended(state)
