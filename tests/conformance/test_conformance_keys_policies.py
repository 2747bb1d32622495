"""``broker.storage.signing_keys`` and ``broker.storage.policies``: keys by purpose, policy versions."""

from __future__ import annotations

import datetime as dt

from broker.storage import changes, policies, signing_keys
from broker.storage.db import Database
from broker.storage.models import PolicyVersion
from broker.storage.signing_keys import KeyRow

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, 500000, tzinfo=dt.UTC)


def key(kid: str, purpose: str, hours: int, retired: bool = False) -> KeyRow:
    return KeyRow(kid=kid, purpose=purpose, algorithm="ES256", public_jwk={"kty": "EC", "kid": kid},
                  private_key_encrypted=b"\x00sealed", created_at=NOW, activates_at=NOW + dt.timedelta(hours=hours),
                  retired_at=NOW if retired else None)


async def test_keys_of_a_purpose_by_activation_on_both_lanes(database: Database) -> None:
    with database.transaction() as session:
        for row in (key("k2", "broker", 2), key("k1", "broker", 1, retired=True), key("t1", "testidp", 0)):
            signing_keys.add(session, row)
    with database.transaction() as session:
        rows = signing_keys.rows_of(session, "broker")
        assert [(r.kid, r.activates_at, r.retired_at) for r in rows] == [
            ("k1", NOW + dt.timedelta(hours=1), NOW), ("k2", NOW + dt.timedelta(hours=2), None)]
        assert rows[0].public_jwk == {"kty": "EC", "kid": "k1"} and rows[0].private_key_encrypted == b"\x00sealed"
        assert signing_keys.list_keys(session, "broker") == rows
        assert signing_keys.all_keys(session) == [*rows, key("t1", "testidp", 0)]
        assert all(type(k) is KeyRow for k in signing_keys.all_keys(session))
        assert signing_keys.rows_of(session, "none") == []
        signing_keys.lock_keys(session, "broker")  # changes nothing
        assert signing_keys.rows_of(session, "broker") == rows
    async with database.hot.read() as tx:
        assert await signing_keys.rows_of_hot(tx, "broker") == rows


async def test_policy_versions_current_history_and_documents(database: Database) -> None:
    with database.transaction() as session:
        assert policies.current_version(session) == 0
        assert policies.history(session) == []
    async with database.hot.read() as tx:
        assert await policies.current_version_hot(tx) == 0
        assert await policies.document_hot(tx, 1) is None
    with database.transaction() as session:
        for version in (1, 2, 3):
            policies.add(session, PolicyVersion(version=version, document=f"doc {version}", author="ops",
                                                created_at=NOW))
    with database.transaction() as session:
        assert policies.current_version(session) == 3
        assert [p.version for p in policies.history(session, limit=2)] == [3, 2]
        found = policies.get(session, 2)
        assert found is not None and found.document == "doc 2"
        assert policies.get(session, 9) is None
    async with database.hot.read() as tx:
        assert await policies.current_version_hot(tx) == 3
        assert await policies.document_hot(tx, 2) == "doc 2"


def test_retire_sets_when_a_key_stops_signing_and_shows_to_the_key_cache(database: Database) -> None:
    with database.transaction() as session:
        signing_keys.add(session, key("k1", "broker", 0))
        signing_keys.add(session, key("k2", "broker", 1))
    before = changes.generation("signing_keys")
    with database.transaction() as session:
        signing_keys.retire(session, "k1", NOW + dt.timedelta(hours=1))
    assert changes.generation("signing_keys") == before + 1
    with database.transaction() as session:
        assert [(k.kid, k.retired_at) for k in signing_keys.rows_of(session, "broker")] == [
            ("k1", NOW + dt.timedelta(hours=1)), ("k2", None)]
