"""Rotating the key-encryption key: the new key first and the old one as previous, ``broker keys rewrap``,
then the new key alone. Every sealed value survives it unchanged, the audit chain still verifies (its MAC
key is sealed, not derived from the current KEK), and tampering is still found."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select, text

from broker import config
from broker.admin.rewrap import BOUND_TO
from broker.app import build_state, prepare
from broker.keys.crypto import Encryptor
from broker.storage import sealed, upstream_revocations
from broker.storage.db import Database
from broker.storage.models import User, utcnow
from tests.conftest import ISSUER, TEST_USERS, TESTIDP_CLIENT
from tests.support.oauth_flow import authorize, authorize_params, pkce, register_client, tokens_for


@pytest.fixture
def settings(make_settings: Any) -> Any:
    """The IdP's refresh token is kept (encrypted), so every kind of sealed value exists."""
    idp = {"id": "test", "type": "test", "issuer": f"{ISSUER}/testidp", "client_id": TESTIDP_CLIENT["client_id"],
           "client_secret": TESTIDP_CLIENT["client_secret"], "check_upstream_on_refresh": True,
           "scopes": ["openid", "email", "profile", "offline_access"]}
    return make_settings(idps=[idp], testidp={"enabled": True, "users": TEST_USERS, "clients": [TESTIDP_CLIENT]})


def opened(database: Database, encryptor: Encryptor) -> dict[tuple[str, str], bytes]:
    """Every sealed value in the database, decrypted: (kind, row) -> plaintext."""
    found = {}
    with database.sessions() as session:
        for column in sealed.SEALED:
            for row in sealed.rows(session, column):
                plaintext = encryptor.decrypt(getattr(row, column.blob), BOUND_TO[column.kind](row))
                found[(column.kind, str(getattr(row, column.key[0])))] = plaintext
    return found


def run(cli: Any, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_rotation_with_rewrap_keeps_every_sealed_value_and_the_audit_chain(
        client: httpx.AsyncClient, state: Any, cli: Any, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, make_settings: Any) -> None:
    app = register_client(state, trusted=True).row.id
    await tokens_for(client, app)  # keeps the IdP's refresh token
    assert (await authorize(client, app, pkce()[1], username="carol"))["error"] == "access_denied"  # signed in
    with state.database.transaction() as session:  # as offboarding carol queues hers for revocation at the IdP
        carol = session.scalar(select(User.id).where(User.email == "carol@example.com"))
        assert upstream_revocations.take_refresh_tokens(session, carol, utcnow()) == 1
    started = await client.get("/authorize?" + urlencode(authorize_params(register_client(state).row.id,
                                                                          pkce()[1])))
    assert started.status_code == 302  # a sign-in waiting at the IdP: its PKCE verifier is sealed
    old, new = state.settings.key_encryption_key(), config.new_kek()
    assert run(cli, capsys, "audit", "verify")[0] == 0  # seals everything so far under the chain's key
    before = opened(state.database, Encryptor(old))
    assert {kind for kind, _ in before} == {c.kind for c in sealed.SEALED}

    monkeypatch.setenv("BROKER_KEYS__KEY_ENCRYPTION_KEY", new)
    monkeypatch.setenv("BROKER_KEYS__PREVIOUS_KEY_ENCRYPTION_KEYS", config.new_kek() + "," +
                       state.settings.keys.key_encryption_key.get_secret_value())
    code, out, _ = run(cli, capsys, "keys", "rewrap", "--json")
    counts = {c.kind: sum(1 for kind, _ in before if kind == c.kind) for c in sealed.SEALED}
    assert counts["signing keys"] == 2 and counts["sealed secrets"] == 1  # the broker's, the test IdP's; the MAC key
    assert code == 0 and json.loads(out) == {"rewrapped": counts, "current": 0}
    code, out, _ = run(cli, capsys, "keys", "rewrap", "--json")
    assert json.loads(out)["current"] == len(before) and set(json.loads(out)["rewrapped"].values()) == {0}

    monkeypatch.delenv("BROKER_KEYS__PREVIOUS_KEY_ENCRYPTION_KEYS")  # the old key is gone for good
    assert opened(state.database, Encryptor(config.decode_kek(new))) == before
    code, out, _ = run(cli, capsys, "audit", "verify")
    assert code == 0 and out.startswith("audit chain intact: ")
    rotated = build_state(make_settings(keys={"key_encryption_key": new}))
    prepare(rotated)  # `broker serve` starts: every signing key opens under the new key alone
    rotated.database.dispose()

    with state.database.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'someone else' WHERE chain_seq = 1"))
    code, _, err = run(cli, capsys, "audit", "verify", "--no-seal")
    assert code == 1 and "BROKEN at event" in err and "(chain position 1)" in err


async def test_rewrap_changes_nothing_when_a_value_opens_under_no_configured_key(
        client: httpx.AsyncClient, state: Any, cli: Any, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = opened(state.database, Encryptor(state.settings.key_encryption_key()))
    monkeypatch.setenv("BROKER_KEYS__KEY_ENCRYPTION_KEY", config.new_kek())  # the old key forgotten
    code, out, err = run(cli, capsys, "keys", "rewrap")
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith("broker: keys rewrap: signing keys: kid ") and err.endswith("nothing was changed\n")
    assert opened(state.database, Encryptor(state.settings.key_encryption_key())) == before
