"""Offboarding and the user's session at Okta and Entra ID (issue: offboarding leaves it alive).

Okta advertises an RFC 7009 ``revocation_endpoint``: the stored refresh token is revoked there, with the
broker's client authentication. Entra ID's discovery document has none: the stored copy is dropped and the
audit says the IdP offers no revocation. Both fakes (tests/support/fake_idps.py) answer as the vendors
document; the broker's outgoing HTTP reaches them in-process.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from broker.storage.models import UpstreamIdentity, User
from tests.flows.test_federation_okta_entra import IDPS, Upstreams, log_in
from tests.flows.test_upstream_revocation import offboard, outcomes, revocations


@pytest.fixture
def loopback() -> Upstreams:
    return Upstreams()


@pytest.fixture
def settings(make_settings: Any) -> Any:
    """Both IdPs asked for a refresh token (stored by default), as check_upstream_on_refresh would."""
    return make_settings(idps=[{**idp, "scopes": ["openid", "email", "profile", "offline_access"]} for idp in IDPS])


@pytest.fixture
async def upstream_browser(loopback: Upstreams) -> Any:
    async with httpx.AsyncClient(transport=loopback) as http:
        yield http


def user_of(state: Any, idp_id: str) -> str:
    with state.database.sessions() as session:
        identity = session.scalars(select(UpstreamIdentity).where(UpstreamIdentity.idp_id == idp_id)).one()
        assert identity.refresh_token_encrypted is not None
        return identity.user_id


async def test_offboarding_revokes_at_okta_and_drops_the_entra_copy(client: httpx.AsyncClient, state: Any,
                                                                   upstream_browser: httpx.AsyncClient,
                                                                   loopback: Upstreams) -> None:
    await log_in(client, upstream_browser, state, "alice@okta.example")
    await log_in(client, upstream_browser, state, "bob@entra.example")
    for idp_id in ("okta", "entra"):
        offboard(state, user_of(state, idp_id))
    done = await revocations(state).run()
    assert sorted((o.idp_id, o.result) for o in done) == [("entra", "not_offered"), ("okta", "revoked")]
    assert loopback.okta.revoked == [("okta-client", loopback.okta.refresh_tokens[0], "refresh_token")]
    assert sorted(data["result"] for _, data in outcomes(state)) == ["not_offered", "revoked"]
    with state.database.sessions() as session:
        assert list(session.scalars(select(UpstreamIdentity.refresh_token_encrypted))) == [None, None]
        assert {u.status for u in session.scalars(select(User))} == {"offboarded"}
