"""``broker.storage.users``: the user list, identities and the count of a user's live refresh-token families."""

from __future__ import annotations

import datetime as dt

from broker.storage import grants, users
from broker.storage.db import Database
from broker.storage.enums import UserStatus
from broker.storage.models import RefreshTokenFamily, UpstreamIdentity, User

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, tzinfo=dt.UTC)


def family(family_id: str, user_id: str, *, revoked: bool = False, expired: bool = False) -> RefreshTokenFamily:
    return RefreshTokenFamily(id=family_id, client_id="app", user_id=user_id, resource="https://a.example/mcp",
                              current_hash=family_id * 8, created_at=NOW, last_used_at=NOW,
                              expires_at=NOW + dt.timedelta(days=-1 if expired else 30),
                              revoked_at=NOW if revoked else None)


def test_list_all_is_by_email_then_id_and_narrows_by_status(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u3", email="b@example.com"), User(id="u2", email="a@example.com"),
                  User(id="u1", email="b@example.com", status=UserStatus.OFFBOARDED))
    with database.transaction() as session:
        assert [u.id for u in users.list_all(session)] == ["u2", "u1", "u3"]
        assert [u.id for u in users.list_all(session, UserStatus.OFFBOARDED)] == ["u1"]
        assert [u.id for u in users.list_all(session, UserStatus.ACTIVE)] == ["u2", "u3"]
        assert all(type(u) is User for u in users.list_all(session))


def test_identities_of_a_user_are_theirs_alone_by_idp_and_subject(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1"), User(id="u2"))
        users.add(session, UpstreamIdentity(user_id="u1", idp_id="okta", subject="s2"),
                  UpstreamIdentity(user_id="u1", idp_id="entra", subject="s9"),
                  UpstreamIdentity(user_id="u1", idp_id="okta", subject="s1"),
                  UpstreamIdentity(user_id="u2", idp_id="okta", subject="s3"))
    with database.transaction() as session:
        assert [(i.idp_id, i.subject) for i in users.identities_of(session, "u1")] == [
            ("entra", "s9"), ("okta", "s1"), ("okta", "s2")]
        assert users.identities_of(session, "nobody") == []


def test_live_family_count_leaves_out_revoked_families_and_other_users(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1"), User(id="u2"))
        grants.add(session, family("f1", "u1"), family("f2", "u1", expired=True), family("f3", "u1", revoked=True),
                   family("f4", "u2"))
    with database.transaction() as session:
        assert users.live_family_count(session, "u1") == 2  # an expired family is not revoked
        assert users.live_family_count(session, "u2") == 1
        assert users.live_family_count(session, "nobody") == 0
