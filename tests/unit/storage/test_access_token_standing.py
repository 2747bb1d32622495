"""``grants.access_token_standing``: what introspection must know about an access token, in one statement,
on both stores: its jti revoked, its client's status, its family live or revoked, its user's standing."""

from __future__ import annotations

import datetime as dt

from broker.storage import grants
from broker.storage.db import Database
from broker.storage.models import Client, RefreshTokenFamily, User

NOW = dt.datetime(2026, 11, 26, 12, 0, 0, 250000, tzinfo=dt.UTC)


def seed(database: Database) -> None:
    with database.transaction() as session:
        session.add_all([
            Client(id="app", name="App", kind="public", status="active", token_endpoint_auth_method="none",
                   redirect_uris=[], grant_types=[], trusted=False, may_introspect=False),
            Client(id="gone", name="Gone", kind="public", status="disabled", token_endpoint_auth_method="none",
                   redirect_uris=[], grant_types=[], trusted=False, may_introspect=False),
            User(id="ann", email="ann@example.com", status="active"),
            User(id="bob", email="bob@example.com", status="offboarded", not_before=NOW),
        ])
        session.flush()
        session.add_all([
            RefreshTokenFamily(id="f-live", client_id="app", user_id="ann", resource="r", current_hash="a" * 64,
                               expires_at=NOW + dt.timedelta(days=1)),
            RefreshTokenFamily(id="f-dead", client_id="app", user_id="ann", resource="r", current_hash="b" * 64,
                               expires_at=NOW + dt.timedelta(days=1), revoked_at=NOW),
        ])
    with database.transaction() as session:
        grants.revoke_token_id(session, "jti-revoked", NOW + dt.timedelta(minutes=5), "test", "app")


def standing(database: Database, **ids: str | None) -> tuple:
    asked = {"jti": "jti-1", "client_id": "app", "family_id": None, "user_id": None, **ids}
    with database.transaction() as session:
        return tuple(grants.access_token_standing(session, **asked))


def test_each_part_of_a_tokens_standing(migrated: Database) -> None:
    seed(migrated)
    assert standing(migrated) == (None, "active", None, None, None)
    assert standing(migrated, jti="jti-revoked")[0] is not None
    assert standing(migrated, client_id="gone")[1] == "disabled"
    assert standing(migrated, client_id="nobody")[1] is None
    assert standing(migrated, family_id="f-live")[2] == "live"
    assert standing(migrated, family_id="f-dead")[2] == "revoked"
    assert standing(migrated, family_id="f-none")[2] is None
    assert standing(migrated, user_id="ann")[3:] == ("active", None)
    assert standing(migrated, user_id="bob")[3:] == ("offboarded", NOW)
    assert standing(migrated, user_id="nobody")[3:] == (None, None)
