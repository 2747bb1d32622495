"""``broker.storage.grants``' sign-ins under way: ``Pending`` rows, held, read, advanced once, updated."""

from __future__ import annotations

import datetime as dt

from broker.storage import grants, users
from broker.storage.db import Database
from broker.storage.enums import SignInStatus
from broker.storage.models import User

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, 250000, tzinfo=dt.UTC)
HELD = {"id": "p1", "browser_hash": "b" * 64, "status": SignInStatus.LOGIN, "client_id": "https://app.example/c",
        "redirect_uri": "https://app.example/cb", "resource": "https://a.example/mcp", "server_id": "a",
        "requested_scope": "read", "state": None, "code_challenge": "c" * 43, "code_challenge_method": "S256",
        "nonce": "n", "idp_id": "test", "upstream_state_hash": "s" * 64, "upstream_nonce": "u",
        "upstream_verifier_encrypted": b"\x00v", "oidc_scope": None, "prompt": None, "dpop_jkt": "k" * 43,
        "created_at": NOW, "expires_at": NOW + dt.timedelta(minutes=10)}


def test_a_held_sign_in_reads_back_by_id_and_by_upstream_state(database: Database) -> None:
    with database.transaction() as session:
        grants.hold_pending(session, **HELD)
    with database.transaction() as session:
        found = grants.pending(session, "p1")
        assert type(found) is grants.Pending
        assert found._asdict() == {**HELD, "granted_scope": None, "user_id": None, "auth_time": None, "acr": None}
        assert grants.pending_by_upstream_state(session, "s" * 64) == found
        assert grants.pending(session, "p2") is None
        assert grants.pending_by_upstream_state(session, "t" * 64) is None


def test_a_sign_in_advances_once_from_the_status_it_is_in(database: Database) -> None:
    with database.transaction() as session:
        grants.hold_pending(session, **HELD)
    with database.transaction() as session:
        assert grants.advance_pending(session, "p1", SignInStatus.LOGIN, SignInStatus.CALLBACK) is True
        assert grants.advance_pending(session, "p1", SignInStatus.LOGIN, SignInStatus.CALLBACK) is False
        assert grants.advance_pending(session, "p2", SignInStatus.LOGIN, SignInStatus.CALLBACK) is False
    with database.transaction() as session:
        found = grants.pending(session, "p1")
        assert found is not None and found.status == SignInStatus.CALLBACK


def test_update_pending_sets_the_columns_named(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1"))
        grants.hold_pending(session, **HELD)
    with database.transaction() as session:
        grants.update_pending(session, "p1", user_id="u1", auth_time=NOW, granted_scope="read", acr="mfa")
    with database.transaction() as session:
        found = grants.pending(session, "p1")
        assert found is not None
        assert (found.user_id, found.auth_time, found.granted_scope, found.acr) == ("u1", NOW, "read", "mfa")
        assert found.requested_scope == "read" and found.status == SignInStatus.LOGIN
