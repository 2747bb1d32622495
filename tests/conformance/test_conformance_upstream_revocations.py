"""``broker.storage.upstream_revocations``: upstream refresh tokens queued at offboarding, claimed once each."""

from __future__ import annotations

import datetime as dt

from broker.storage import upstream_revocations, users
from broker.storage.db import Database
from broker.storage.models import UpstreamIdentity, User
from broker.storage.upstream_revocations import PendingRevocation

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, tzinfo=dt.UTC)


def test_tokens_move_from_identities_to_the_queue_and_are_claimed_once(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1"), User(id="u2"))
        users.add(session, UpstreamIdentity(id="i1", user_id="u1", idp_id="okta", subject="a",
                                            refresh_token_encrypted=b"r1"),
                  UpstreamIdentity(id="i2", user_id="u1", idp_id="entra", subject="b"),
                  UpstreamIdentity(id="i3", user_id="u1", idp_id="google", subject="c", refresh_token_encrypted=b"r3"),
                  UpstreamIdentity(id="i4", user_id="u2", idp_id="okta", subject="d", refresh_token_encrypted=b"r4"))
    with database.transaction() as session:
        assert upstream_revocations.take_refresh_tokens(session, "u1", NOW) == 2
        assert upstream_revocations.take_refresh_tokens(session, "u1", NOW) == 0  # none left on the identities
    with database.transaction() as session:
        left = {i.id: i.refresh_token_encrypted for i in users.identities_of(session, "u1")}
        assert left == {"i1": None, "i2": None, "i3": None}
        first = upstream_revocations.claim(session, 1)
        rest = upstream_revocations.claim(session, 10)
        assert upstream_revocations.claim(session, 10) == []
    claimed = first + rest
    assert all(type(p) is PendingRevocation for p in claimed)
    assert sorted((p.user_id, p.idp_id, p.identity_id, p.token_encrypted) for p in claimed) == [
        ("u1", "google", "i3", b"r3"), ("u1", "okta", "i1", b"r1")]
    assert len(first) == 1 and first[0].id < rest[0].id
