"""Signing-key rotation as the broker wires it: the periodic job and its audit event; how long a retired key
stays published."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jwt
import pytest
from sqlalchemy import select

from broker.admin import keys as key_admin
from broker.storage import mcp_servers, signing_keys
from broker.storage.models import AuditEvent, utcnow
from tests.support.oauth_flow import register_client, tokens_for


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(keys={"rotate_every": 2, "activation_delay": 1})


def test_the_broker_rotates_on_schedule_by_itself(state: Any) -> None:
    [(interval, job)] = [(i, j) for i, j in state.periodic if j.__name__ == "rotate_signing_key_when_due"]
    assert interval == 1.0
    with state.database.sessions() as session:
        [first] = signing_keys.list_keys(session, "broker")
    job()
    with state.database.sessions() as session:
        assert len(signing_keys.list_keys(session, "broker")) == 1  # not due until a delay before 2 s
    due = first.activates_at + dt.timedelta(seconds=1)
    while utcnow() < due:
        job()
    job()
    with state.database.sessions() as session:
        keys = signing_keys.list_keys(session, "broker")
        events = list(session.scalars(select(AuditEvent).where(AuditEvent.event_type == "key.rotated")))
    assert len(keys) == 2 and keys[0].retired_at == keys[1].activates_at
    # due 2 s after the first started signing; published a full delay (1 s) ahead, so a check that runs late
    # moves it by that much
    assert keys[1].activates_at - keys[1].created_at >= dt.timedelta(seconds=1)
    assert first.activates_at + dt.timedelta(seconds=2) <= keys[1].activates_at \
        <= first.activates_at + dt.timedelta(seconds=2 + interval)
    assert [(e.actor, e.data["after"]["kid"]) for e in events] == [(key_admin.SCHEDULE, keys[1].kid)]


def test_no_schedule_by_default(make_settings: Any) -> None:
    assert make_settings().keys.rotate_every == 0


async def test_a_retired_key_stays_published_while_a_longer_lived_servers_token_is_alive(
        client: Any, state: Any, cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """An MCP server's own access token lifetime (here an hour, the default five minutes) keeps the key that
    signed its tokens in the JWKS, and those tokens active at introspection, until they have expired."""
    with state.database.transaction() as session:
        demo = mcp_servers.get(session, "demo")
        assert demo is not None
        mcp_servers.save(session, demo._replace(access_token_lifetime=3600))
    user_client = register_client(state)
    rs = register_client(state, name="RS", auth_method="client_secret_basic", redirect_uris=[],
                         grant_types=("client_credentials",), may_introspect=True)
    token = (await tokens_for(client, user_client.row.id))["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600
    old_kid = jwt.get_unverified_header(token)["kid"]
    with state.database.transaction() as session:
        key_admin.rotate(session, state.keyring, 0, "test")

    def retire_old_key(seconds_ago: int) -> None:
        with state.database.transaction() as session:  # as if the rotation had happened that long ago
            signing_keys.retire(session, old_kid, utcnow() - dt.timedelta(seconds=seconds_ago))

    async def published_and_active() -> tuple[bool, bool]:
        published = {k["kid"] for k in (await client.get("/jwks")).json()["keys"]}
        answer = await client.post("/introspect", data={"token": token}, auth=(rs.row.id, rs.secret))
        return old_kid in published, answer.json()["active"]

    def listed_state() -> str:
        assert cli(["keys", "list", "--json"]) == 0
        return next(k["state"] for k in json.loads(capsys.readouterr().out) if k["kid"] == old_kid)

    retire_old_key(state.settings.longest_jwt_lifetime + 60)  # past every lifetime in the settings
    assert await published_and_active() == (True, True)
    assert listed_state() == "retired (published)"
    retire_old_key(3600 + state.settings.tokens.clock_skew + 1)  # past the server's own lifetime too
    assert await published_and_active() == (False, False)
    assert listed_state() == "expired"
