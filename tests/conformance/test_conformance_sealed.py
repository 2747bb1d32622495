"""``broker.storage.sealed``: the broker's sealed secrets, and every sealed column's rows for a rewrap."""

from __future__ import annotations

import datetime as dt

from broker.storage import sealed, users
from broker.storage.db import Database
from broker.storage.models import UpstreamIdentity, User

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, tzinfo=dt.UTC)
IDENTITIES = next(s for s in sealed.SEALED if s.table.name == "upstream_identities")


def test_a_secret_is_added_once_and_read_back(database: Database) -> None:
    with database.transaction() as session:
        assert sealed.secret(session, "mac") is None
        sealed.add_secret_if_absent(session, "mac", b"first", NOW)
        sealed.add_secret_if_absent(session, "mac", b"second", NOW)  # another process's: the first one stays
    with database.transaction() as session:
        assert sealed.secret(session, "mac") == b"first"
        assert sealed.secret(session, "other") is None


def test_rows_are_those_holding_a_sealed_value_and_replace_changes_one(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1"))
        users.add(session, *(UpstreamIdentity(id=f"i{n}", user_id="u1", idp_id="idp", subject=f"s{n}",
                                              refresh_token_encrypted=blob)
                             for n, blob in enumerate((b"one", b"two", None, b""))))
    with database.transaction() as session:
        found = list(sealed.rows(session, IDENTITIES, batch=1))
        assert sorted((row.refresh_token_encrypted, row.id) for row in found) == [(b"one", "i0"), (b"two", "i1")]
        sealed.replace(session, IDENTITIES, next(row for row in found if row.id == "i0"), b"rewrapped")
    with database.transaction() as session:
        assert sorted(row.refresh_token_encrypted for row in sealed.rows(session, IDENTITIES)) == [b"rewrapped",
                                                                                                   b"two"]
