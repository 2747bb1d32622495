"""Offboarding: after `broker users revoke` returns, nothing the user held works, and nothing new is issued."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from broker.storage.models import AuditEvent
from tests.support.oauth_flow import allow_clients, authorize, pkce, refresh, register_client, tokens_for


async def introspect(client: httpx.AsyncClient, rs, token: str) -> dict:
    return (await client.post("/introspect", data={"token": token}, auth=(rs.row.id, rs.secret))).json()


async def test_revoke_ends_everything_at_once(client: httpx.AsyncClient, state, cli, capsys) -> None:
    app_client = register_client(state)
    rs = register_client(state, name="RS", auth_method="client_secret_basic", redirect_uris=[],
                         grant_types=("client_credentials",), may_introspect=True)
    body = await tokens_for(client, app_client.row.id)
    assert (await introspect(client, rs, body["access_token"]))["active"] is True
    assert cli(["users", "revoke", "alice@example.com", "--reason", "left the company"]) == 0
    assert "1 refresh-token families revoked" in capsys.readouterr().out
    assert await introspect(client, rs, body["access_token"]) == {"active": False}
    assert await introspect(client, rs, body["refresh_token"]) == {"active": False}
    assert (await refresh(client, app_client.row.id, body["refresh_token"])).json()["error"] == "invalid_grant"
    _, challenge = pkce()
    again = await authorize(client, app_client.row.id, challenge, approve=None)
    assert again["error"] == "access_denied"
    with state.database.sessions() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.event_type == "user.offboarded")).one()
    assert event.data["reason"] == "left the company" and event.actor.startswith("cli:")


async def test_revoke_is_idempotent_and_restore_keeps_old_tokens_dead(client, state, cli, capsys) -> None:
    app_client = register_client(state, trusted=True)
    body = await tokens_for(client, app_client.row.id)
    assert cli(["users", "revoke", "alice@example.com", "--reason", "incident"]) == 0
    assert cli(["users", "revoke", "alice@example.com", "--reason", "incident"]) == 0
    assert "already offboarded" in capsys.readouterr().out
    assert cli(["users", "restore", "alice@example.com"]) == 0
    assert (await refresh(client, app_client.row.id, body["refresh_token"])).json()["error"] == "invalid_grant"
    fresh = await tokens_for(client, app_client.row.id)  # signing in again works
    assert fresh["access_token"]
    assert cli(["users", "restore", "alice@example.com"]) == 2  # not offboarded any more


async def test_unknown_user_is_a_clear_error(state, cli, capsys) -> None:
    assert cli(["users", "revoke", "nobody@example.com", "--reason", "x"]) == 2
    assert "no user 'nobody@example.com'" in capsys.readouterr().err


async def test_users_list_and_show(client, state, cli, capsys) -> None:
    import json

    await tokens_for(client, register_client(state, trusted=True).row.id)
    assert cli(["users", "list", "--json"]) == 0
    [alice] = json.loads(capsys.readouterr().out)
    assert alice["email"] == "alice@example.com" and alice["status"] == "active"
    assert cli(["users", "show", "test:alice", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["groups"] == ["engineering"] and shown["live_refresh_families"] == 1


ADMIN_API = "http://127.0.0.1:8000/admin/api"


async def admin_token(client: httpx.AsyncClient, state, scopes: tuple[str, ...], resource: str = ADMIN_API) -> str:
    robot = register_client(state, name="SOAR", auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",), scopes=scopes)
    allow_clients(state, robot.row.id)
    response = await client.post("/token", data={"grant_type": "client_credentials", "resource": resource},
                                 auth=(robot.row.id, robot.secret))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


async def test_admin_api_revoke(client: httpx.AsyncClient, state) -> None:
    app_client = register_client(state, trusted=True)
    body = await tokens_for(client, app_client.row.id)
    token = await admin_token(client, state, ("security:revoke",))
    response = await client.post("/admin/api/v1/users/alice@example.com/revoke", json={"reason": "SOAR playbook"},
                                 headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json()["families_revoked"] == 1
    assert (await refresh(client, app_client.row.id, body["refresh_token"])).json()["error"] == "invalid_grant"
    with state.database.sessions() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.event_type == "user.offboarded")).one()
    assert event.actor.startswith("client:") and event.data["source"] == "admin-api"


@pytest.mark.parametrize("case", ["missing", "wrong-scope", "wrong-audience", "garbage"])
async def test_admin_api_refuses_bad_credentials_and_changes_nothing(client, state, case) -> None:
    from broker.storage.models import User

    await tokens_for(client, register_client(state, trusted=True).row.id)
    headers = {}
    if case == "wrong-scope":
        headers["authorization"] = "Bearer " + await admin_token(client, state, ("admin:read",))
    elif case == "wrong-audience":
        headers["authorization"] = "Bearer " + await admin_token(client, state, ("tools:read",),
                                                                 resource="http://127.0.0.1:8000/demo/mcp")
    elif case == "garbage":
        headers["authorization"] = "Bearer not-a-token"
    response = await client.post("/admin/api/v1/users/alice@example.com/revoke", json={"reason": "x"},
                                 headers=headers)
    assert response.status_code == (403 if case == "wrong-scope" else 401)
    assert response.headers["www-authenticate"].startswith("Bearer ")
    with state.database.sessions() as session:
        assert session.scalars(select(User)).one().status == "active"


async def test_admin_api_unknown_user_and_bad_body(client, state) -> None:
    token = await admin_token(client, state, ("security:revoke",))
    auth = {"authorization": f"Bearer {token}"}
    missing = await client.post("/admin/api/v1/users/ghost@example.com/revoke", json={"reason": "x"}, headers=auth)
    assert missing.status_code == 404
    bad = await client.post("/admin/api/v1/users/ghost@example.com/revoke", json={"reason": ""}, headers=auth)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"


async def test_a_code_issued_before_a_revocation_stays_dead_after_restore(client, state, cli) -> None:
    """The code grant checks the user's not-before exactly as the refresh grant does."""
    import asyncio

    from tests.support.oauth_flow import exchange

    new = register_client(state, trusted=True)
    verifier, challenge = pkce()
    code = (await authorize(client, new.row.id, challenge))["code"]
    await asyncio.sleep(0.01)  # the revocation's not-before is after the code's creation
    assert cli(["users", "revoke", "alice@example.com", "--reason", "incident"]) == 0
    assert cli(["users", "restore", "alice@example.com"]) == 0
    response = await exchange(client, new.row.id, code, verifier)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


# ---------------------------------------------------------------- an email two users have (a decoy)


def decoy(state, idp: str = "other") -> str:
    """Another IdP's user with alice's address, which that IdP vouches for."""
    from broker.federation.identity import Identity
    from broker.keys.crypto import Encryptor
    from broker.oauth import provisioning
    from broker.storage.models import utcnow

    identity = Identity(idp_id=idp, subject="decoy", email="alice@example.com", email_verified=True, name="Decoy",
                        groups=(), claims={"sub": "decoy"}, auth_time=None, acr=None, amr=())
    with state.database.transaction() as session:
        return provisioning.upsert_user(session, identity, Encryptor(state.settings.key_encryption_key()),
                                        utcnow()).id


def statuses(state) -> dict[str, str]:
    from broker.storage.models import User

    with state.database.sessions() as session:
        return {u.display_name: u.status for u in session.scalars(select(User))}


async def test_an_email_several_users_have_lists_them_and_changes_nothing(client, state, cli, capsys) -> None:
    await tokens_for(client, register_client(state, trusted=True).row.id)
    decoy_id = decoy(state)
    assert cli(["users", "revoke", "alice@example.com", "--reason", "left"]) == 2
    error = capsys.readouterr().err
    assert "matches 2 users" in error and decoy_id in error and "test:alice" in error and "other:decoy" in error
    assert "--idp" in error and "--all-matches" in error and error.count("\n") == 1  # one line
    assert set(statuses(state).values()) == {"active"}


async def test_offboarding_by_email_names_the_idp_or_takes_every_match(client, state, cli, capsys) -> None:
    await tokens_for(client, register_client(state, trusted=True).row.id)
    decoy(state)
    assert cli(["users", "revoke", "alice@example.com", "--idp", "test", "--reason", "left"]) == 0
    assert statuses(state) == {"Alice Anders": "offboarded", "Decoy": "active"}
    assert cli(["users", "revoke", "alice@example.com", "--all-matches", "--reason", "incident"]) == 0
    assert set(statuses(state).values()) == {"offboarded"}


async def test_a_deleted_decoy_no_longer_blocks_offboarding(client, state, cli, capsys) -> None:
    """The decoy is offboarded already (its IdP deleted it): the one user the email still names is offboarded."""
    await tokens_for(client, register_client(state, trusted=True).row.id)
    decoy_id = decoy(state)
    assert cli(["users", "revoke", decoy_id, "--reason", "deleted in the IdP"]) == 0
    assert cli(["users", "revoke", "alice@example.com", "--reason", "left"]) == 0
    assert set(statuses(state).values()) == {"offboarded"}


async def test_the_admin_api_offboards_by_email_with_an_idp_or_every_match(client, state) -> None:
    from tests.flows.test_admin_api import API, bearer

    await tokens_for(client, register_client(state, trusted=True).row.id)
    decoy_id = decoy(state)
    auth, _ = await bearer(client, state, "security:revoke")
    ambiguous = await client.post(f"{API}/users/alice@example.com/revoke", json={"reason": "left"}, headers=auth)
    assert ambiguous.status_code == 409 and ambiguous.json()["error"] == "conflict"
    assert {c["id"] for c in ambiguous.json()["candidates"]} >= {decoy_id}
    assert ["other:decoy"] in [c["identities"] for c in ambiguous.json()["candidates"]]
    assert set(statuses(state).values()) == {"active"}
    named = await client.post(f"{API}/users/alice@example.com/revoke", json={"reason": "left", "idp": "test"},
                              headers=auth)
    assert named.status_code == 200 and named.json()["user_id"] != decoy_id
    every = await client.post(f"{API}/users/alice@example.com/revoke", json={"reason": "x", "all_matches": True},
                              headers=auth)
    assert every.status_code == 200 and len(every.json()["revoked"]) == 2
    assert set(statuses(state).values()) == {"offboarded"}
