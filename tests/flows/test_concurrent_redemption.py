"""Single use under concurrency: 50 simultaneous redemptions of one grant (issue 10, item 3).

The requests go through the whole app at once (ASGI; the protocol core runs in the thread pool, so
they really overlap in the database), on SQLite and on PostgreSQL. Exactly one may win; for a
refresh token the losers are reuse, which revokes the family.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from broker.storage.models import AuditEvent, RefreshTokenFamily
from tests.support.id_jag import FakeIdp, grant_form, trusted_issuer
from tests.support.oauth_flow import DEMO_RESOURCE, authorize, exchange, pkce, register_client, tokens_for

COPIES = 50


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(id_jag={"trusted_issuers": [trusted_issuer()]})


async def at_once(requests: list) -> list[httpx.Response]:
    return list(await asyncio.gather(*requests))


async def test_one_refresh_token_fifty_times(client: httpx.AsyncClient, state: Any) -> None:
    app = register_client(state)
    tokens = await tokens_for(client, app.row.id)
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": app.row.id}
    responses = await at_once([client.post("/token", data=form) for _ in range(COPIES)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    assert {r.json()["error"] for r in responses if r.status_code != 200} == {"invalid_grant"}
    with state.database.sessions() as session:
        family = session.scalar(select(RefreshTokenFamily))
        reuse = session.scalars(select(AuditEvent).where(AuditEvent.event_type == "refresh_token.reuse_detected"))
        assert family.revoked_at is not None and len(list(reuse)) >= 1
    winner = next(r for r in responses if r.status_code == 200).json()["refresh_token"]
    after = await client.post("/token", data={**form, "refresh_token": winner})
    assert after.json()["error"] == "invalid_grant"  # the family is gone, the winner's token too


async def test_one_code_fifty_times(client: httpx.AsyncClient, state: Any) -> None:
    app = register_client(state)
    verifier, challenge = pkce()
    redirect = await authorize(client, app.row.id, challenge)
    responses = await at_once([exchange(client, app.row.id, redirect["code"], verifier) for _ in range(COPIES)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    assert {r.json()["error"] for r in responses if r.status_code != 200} == {"invalid_grant"}


async def test_one_id_jag_fifty_times(client: httpx.AsyncClient, state: Any, loopback: Any) -> None:
    from tests.flows.test_id_jag_grant import sign_in

    sign_in(state, "alice", ("engineering",))
    idp = FakeIdp().install(loopback)
    agent = register_client(state, auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("urn:ietf:params:oauth:grant-type:jwt-bearer",))
    assertion = idp.assertion(agent.row.id, resource=DEMO_RESOURCE)
    responses = await at_once([client.post("/token", data=grant_form(assertion), auth=(agent.row.id, agent.secret))
                               for _ in range(COPIES)])
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    assert {r.json()["error"] for r in responses if r.status_code != 200} == {"invalid_grant"}


async def test_concurrent_introspection_and_revocation_keep_their_own_sessions(client, state) -> None:
    """authlib keeps one endpoint object for all requests; each request must still use its own session
    (a shared attribute once made concurrent introspections fail with 500s under load)."""
    app = register_client(state)
    server = register_client(state, auth_method="client_secret_basic", redirect_uris=[], grant_types=(),
                             may_introspect=True)
    tokens = await tokens_for(client, app.row.id)
    introspections = [client.post("/introspect", data={"token": tokens["access_token"]},
                                  auth=(server.row.id, server.secret)) for _ in range(100)]
    revocations = [client.post("/revoke", data={"token": "unknown-token", "client_id": app.row.id})
                   for _ in range(50)]
    responses = await at_once([*introspections, *revocations])
    assert [r.status_code for r in responses] == [200] * 150
    assert all(r.json()["active"] is True for r in responses[:100])


async def test_concurrent_first_assertions_for_one_new_subject(client, state, loopback) -> None:
    """Twenty first-sight ID-JAGs for one unknown subject at once (provision_users): one user, no 500."""
    from broker.config import IdJagSettings, TrustedAssertionIssuer
    from broker.storage.models import UpstreamIdentity

    state.settings = state.settings.model_copy(update={"id_jag": IdJagSettings(
        trusted_issuers=[TrustedAssertionIssuer(**trusted_issuer(provision_users=True))])})
    state.oauth.engine.settings = state.settings
    state.oauth.engine.assertion_issuers = {t.issuer: t for t in state.settings.id_jag.trusted_issuers}
    idp = FakeIdp().install(loopback)
    agent = register_client(state, auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("urn:ietf:params:oauth:grant-type:jwt-bearer",))
    assertions = [idp.assertion(agent.row.id, sub="newcomer", email="newcomer@example.com") for _ in range(20)]
    responses = await at_once([client.post("/token", data=grant_form(a), auth=(agent.row.id, agent.secret))
                               for a in assertions])
    assert all(r.status_code in (200, 400) for r in responses), [r.text for r in responses if r.status_code >= 500]
    with state.database.sessions() as session:
        rows = session.scalars(select(UpstreamIdentity).where(UpstreamIdentity.subject == "newcomer")).all()
    assert len(rows) == 1
