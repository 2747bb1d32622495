"""Offboarding revokes the user's stored upstream refresh token at the IdP (RFC 7009) when it offers an endpoint,
drops the broker's copy either way, audits the outcome, and never holds a transaction across the IdP call."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import select

from broker.federation.errors import UpstreamUnavailable
from broker.lifecycle import offboarding
from broker.lifecycle.upstream_revocation import UpstreamRevocations
from broker.storage.models import AuditEvent, UpstreamIdentity, UpstreamRevocation, User, utcnow
from tests.conftest import ISSUER, TEST_USERS, TESTIDP_CLIENT
from tests.support.oauth_flow import register_client, tokens_for

IDP = {"id": "test", "type": "test", "issuer": f"{ISSUER}/testidp", "client_id": TESTIDP_CLIENT["client_id"],
       "client_secret": TESTIDP_CLIENT["client_secret"], "scopes": ["openid", "email", "profile", "offline_access"]}


@pytest.fixture
def settings(make_settings):
    return make_settings(idps=[IDP], testidp={"enabled": True, "users": TEST_USERS, "clients": [TESTIDP_CLIENT]})


async def alice_signed_in(client: httpx.AsyncClient, state: Any) -> str:
    await tokens_for(client, register_client(state, trusted=True).row.id)  # the test IdP issues a refresh token
    with state.database.sessions() as session:
        identity = session.scalars(select(UpstreamIdentity)).one()
        assert identity.refresh_token_encrypted is not None
        return identity.user_id


def offboard(state: Any, user_id: str) -> None:
    with state.database.transaction() as session:
        offboarding.revoke_user(session, user_id, reason="left", actor="admin:test", now=utcnow())


def stored(state: Any) -> tuple[bytes | None, int]:
    """The identity's copy of the token, and how many tokens wait to be revoked."""
    with state.database.sessions() as session:
        return (session.scalars(select(UpstreamIdentity.refresh_token_encrypted)).one(),
                len(session.scalars(select(UpstreamRevocation)).all()))


def outcomes(state: Any) -> list[tuple[str, dict]]:
    with state.database.sessions() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.event_type == "upstream.refresh_token_revoked"))
        return [(e.outcome, e.data) for e in events]


def revocations(state: Any) -> UpstreamRevocations:
    return UpstreamRevocations(state.database, state.oauth.login.encryptor, state.oauth.connectors)


async def test_the_idp_revokes_the_token_outside_any_transaction(client: httpx.AsyncClient, state: Any) -> None:
    user_id = await alice_signed_in(client, state)
    offboard(state, user_id)
    assert stored(state) == (None, 1)  # gone from the identity at once, queued for the IdP
    received: list[str] = []
    pool = state.database.engine.pool
    checked_out = pool.checkedout()

    async def revoke(token: str) -> bool:
        received.append(token)
        assert pool.checkedout() == checked_out  # no connection (so no transaction) held across the call
        await anyio.sleep(0)
        return True

    state.oauth.connectors["test"].revoke_refresh_token = revoke
    done = await revocations(state).run()
    assert [(o.idp_id, o.result) for o in done] == [("test", "revoked")]
    assert len(received) == 1 and received[0]  # the decrypted upstream token went to the IdP
    assert stored(state) == (None, 0)
    assert outcomes(state) == [("revoked", {"idp": "test", "result": "revoked", "detail": None})]
    assert await revocations(state).run() == []  # once


async def test_a_failing_idp_changes_nothing_but_the_audit(client: httpx.AsyncClient, state: Any) -> None:
    user_id = await alice_signed_in(client, state)

    async def down(token: str) -> bool:
        raise UpstreamUnavailable("the identity provider's revocation endpoint could not be reached")

    state.oauth.connectors["test"].revoke_refresh_token = down
    offboard(state, user_id)
    done = await revocations(state).run()
    assert [o.result for o in done] == ["failed"]
    assert stored(state) == (None, 0)  # dropped either way
    with state.database.sessions() as session:
        assert session.get(User, user_id).status == "offboarded"
    [(outcome, data)] = outcomes(state)
    assert outcome == "failure" and data["detail"] == "the identity provider's revocation endpoint could not be reached"


async def test_an_idp_without_a_revocation_endpoint_only_loses_the_copy(client: httpx.AsyncClient,
                                                                        state: Any) -> None:
    user_id = await alice_signed_in(client, state)  # the built-in test IdP advertises no revocation_endpoint
    offboard(state, user_id)
    done = await revocations(state).run()
    assert [o.result for o in done] == ["not_offered"] and stored(state) == (None, 0)
    assert outcomes(state)[0][1]["result"] == "not_offered"


async def test_the_offboarding_event_counts_the_tokens_taken(client: httpx.AsyncClient, state: Any) -> None:
    user_id = await alice_signed_in(client, state)
    offboard(state, user_id)
    offboard(state, user_id)  # again: nothing left to take
    with state.database.sessions() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.event_type == "user.offboarded"))
        assert [e.data["upstream_refresh_tokens"] for e in events] == [1, 0]


async def test_the_cli_revokes_right_after_the_offboarding(client: httpx.AsyncClient, state: Any, cli: Any,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    user_id = await alice_signed_in(client, state)
    # The CLI builds its own connectors from the same [[idps]]; with no broker serving the test IdP, its
    # discovery document cannot be fetched: the offboarding stands, the copy is gone, the failure is said.
    for key in ("id", "issuer", "client_id", "client_secret"):
        monkeypatch.setenv(f"BROKER_IDPS__0__{key.upper()}", IDP[key])
    monkeypatch.setenv("BROKER_IDPS__0__TYPE", "oidc")
    assert await anyio.to_thread.run_sync(cli, ["users", "revoke", user_id, "--reason", "left"]) == 0
    out = capsys.readouterr().out
    assert f"user {user_id} offboarded" in out and "IdP test: refresh token deleted, but not revoked at the IdP" in out
    assert stored(state) == (None, 0)
    assert outcomes(state)[0][0] == "failure"
