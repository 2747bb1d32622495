"""What the token endpoint writes to the audit log: ids and hashes, never a credential."""

from __future__ import annotations

import json

import httpx
from sqlalchemy import select

from broker import audit
from broker.storage.models import AuditEvent
from tests.support.oauth_flow import refresh, register_client, tokens_for


def events(state) -> list[AuditEvent]:
    with state.database.sessions() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


async def test_token_lifecycle_is_audited_without_credentials(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    body = await tokens_for(client, new.row.id)
    second = (await refresh(client, new.row.id, body["refresh_token"])).json()
    await refresh(client, new.row.id, body["refresh_token"])  # reuse
    types = [e.event_type for e in events(state)]
    assert types[-3:] == ["token.issued", "token.refreshed", "refresh_token.reuse_detected"]
    everything = json.dumps([[e.actor, e.user_id, e.client_id, e.data] for e in events(state)])
    for secret in (body["access_token"], body["refresh_token"], second["access_token"], second["refresh_token"]):
        assert secret not in everything and secret.split(".")[-1] not in everything
    issued = [e for e in events(state) if e.event_type == "token.issued"][-1]
    assert issued.server_id == "demo" and issued.data["scopes"] == ["tools:call", "tools:read"]


async def test_the_chain_seals_what_the_endpoints_wrote(client: httpx.AsyncClient, state) -> None:
    new = register_client(state)
    await tokens_for(client, new.row.id)
    with state.database.transaction() as session:
        key = state.audit_keys.get(session)
        assert audit.seal(session, key) >= 1
    with state.database.sessions() as session:
        assert audit.verify(session, key).ok


async def test_revocation_and_registration_are_audited(client: httpx.AsyncClient, state) -> None:
    response = await client.post("/register", json={"client_name": "Agent", "redirect_uris":
                                                     ["http://127.0.0.1:9999/callback"],
                                                     "token_endpoint_auth_method": "none",
                                                     "grant_types": ["authorization_code", "refresh_token"]})
    client_id = response.json()["client_id"]
    registered = [e for e in events(state) if e.event_type == "client.registered"][-1]
    assert registered.client_id == client_id and registered.actor.startswith("dcr:")
    body = await tokens_for(client, client_id)
    await client.post("/revoke", data={"token": body["refresh_token"], "client_id": client_id})
    revoked = [e for e in events(state) if e.event_type == "token.revoked"][-1]
    assert revoked.data["token_type"] == "refresh_token" and revoked.data["family_id"]
    assert body["refresh_token"] not in json.dumps(revoked.data)


def test_the_servers_sealer_works_in_batches_until_nothing_is_left(state, monkeypatch) -> None:
    """``broker serve``'s periodic job seals in transactions of ``AUDIT_SEAL_BATCH`` events, so requests that
    wait for the write lock get in between, and stops when a batch comes back short."""
    import broker.app

    monkeypatch.setattr(broker.app, "AUDIT_SEAL_BATCH", 10)
    [job] = [job for _, job in state.periodic if job.__name__ == "seal_audit_chain"]
    with state.database.transaction() as session:
        for n in range(25):
            audit.record(session, "test.event", actor=f"actor-{n}")
    transactions = []
    original = state.database.transaction

    def counted():  # type: ignore[no-untyped-def]
        transactions.append(1)
        return original()

    monkeypatch.setattr(state.database, "transaction", counted)
    job()
    with state.database.sessions() as session:
        result = audit.verify(session, state.audit_keys.get(session))
        assert result.ok and result.unsealed == 0
    assert len(transactions) >= 3  # 25 test events (and the seeding's) at 10 per transaction
