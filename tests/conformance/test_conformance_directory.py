"""``broker.storage.directory`` and ``users.set_groups``: users in bulk with groups and latest claims."""

from __future__ import annotations

import datetime as dt

from broker.storage import directory, users
from broker.storage.db import Database
from broker.storage.directory import DirectoryUser
from broker.storage.enums import UserStatus
from broker.storage.models import UpstreamIdentity, User

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, tzinfo=dt.UTC)


def populate(database: Database) -> None:
    with database.transaction() as session:
        users.add(session, User(id="u1", email="ann@example.com", display_name="Ann 100%"),
                  User(id="u2", email="bob@example.com", display_name="Bob", status=UserStatus.OFFBOARDED),
                  User(id="u3", email=None, display_name="Provisioned"))
        users.add(session, UpstreamIdentity(user_id="u1", idp_id="okta", subject="a", claims={"old": 1},
                                            last_login_at=NOW),
                  UpstreamIdentity(user_id="u1", idp_id="entra", subject="b", claims={"new": 2},
                                   last_login_at=NOW + dt.timedelta(minutes=1)),
                  UpstreamIdentity(user_id="u3", idp_id="scim", subject="c", claims={"p": 3}))
        users.set_groups(session, "u1", "idp:okta", ["eng", "ops"])
        users.set_groups(session, "u1", "local", ["admins"])
        users.set_groups(session, "u2", "idp:okta", ["eng"])


def test_users_in_bulk_carry_groups_and_their_latest_sign_in(database: Database) -> None:
    populate(database)
    with database.transaction() as session:
        found = directory.users(session)
        # By email then id; a user without an email sorts first on SQLite and last on PostgreSQL (NULL order).
        assert [u.id for u in found if u.email] == ["u1", "u2"] and len(found) == 3
        by_id = {u.id: u for u in found}
        assert by_id["u1"] == DirectoryUser("u1", "ann@example.com", "Ann 100%", "active", "entra", {"new": 2},
                                            ("admins", "eng", "ops"))
        assert by_id["u3"] == DirectoryUser("u3", None, "Provisioned", "active", "scim", {"p": 3}, ())
        assert [u.id for u in directory.users(session, active_only=True, user_ids=["u1", "u2"])] == ["u1"]
        assert directory.users(session, user_ids=[]) == []
        assert (directory.count(session), directory.count(session, active_only=False)) == (2, 3)
        assert directory.group_names(session) == ["admins", "eng", "ops"]


def test_search_matches_email_name_or_id_taking_wildcards_literally(database: Database) -> None:
    populate(database)
    with database.transaction() as session:
        assert [u.id for u in directory.search(session, "EXAMPLE.com", 10)] == ["u1", "u2"]
        assert [u.id for u in directory.search(session, "100%", 10)] == ["u1"]
        assert [u.id for u in directory.search(session, "%", 10)] == ["u1"]
        assert [u.id for u in directory.search(session, "u3", 10)] == ["u3"]
        assert len(directory.search(session, "example", 1)) == 1


def test_set_groups_makes_one_sources_memberships_exactly_those_named(database: Database) -> None:
    populate(database)
    with database.transaction() as session:
        users.set_groups(session, "u1", "idp:okta", ["ops", "sre"])
        assert users.group_names(session, "u1") == ["admins", "ops", "sre"]
        users.set_groups(session, "u1", "local", [])
        assert users.group_names(session, "u1") == ["ops", "sre"]
        assert users.group_names(session, "u2") == ["eng"]  # another user's membership of a shared group stays
