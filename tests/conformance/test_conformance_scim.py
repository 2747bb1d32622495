"""``broker.storage.scim``: one IdP's SCIM resources, never another's; pages, criteria, groups and members."""

from __future__ import annotations

import datetime as dt

from broker.storage import scim, users
from broker.storage.db import Database
from broker.storage.models import Group, GroupMembership, ScimGroup, ScimUser, User

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, tzinfo=dt.UTC)
OKTA = "okta"


def resource(scim_id: str, user_id: str, idp: str = OKTA, minutes: int = 0, deleted: bool = False) -> ScimUser:
    return ScimUser(id=scim_id, user_id=user_id, idp_id=idp, user_name=scim_id.upper(), user_name_key=scim_id,
                    external_id=f"ext-{scim_id}", created_at=NOW + dt.timedelta(minutes=minutes),
                    deleted_at=NOW if deleted else None)


def scim_group(group_id: str, name: str, idp: str = OKTA, minutes: int = 0) -> list[object]:
    return [Group(id=group_id, source=scim.group_source(idp), name=name, external_id=f"ext-{group_id}"),
            ScimGroup(group_id=group_id, idp_id=idp, display_name_key=name.lower(),
                      created_at=NOW + dt.timedelta(minutes=minutes))]


def provisioned(database: Database) -> None:
    """u1, u2 (okta), u3 (another IdP); g1 {u1, u2}, g2 {u1} at okta; g3 at the other IdP {u3}; u1's deleted
    resource d1 beside its live one."""
    with database.transaction() as session:
        users.add(session, *(User(id=f"u{n}", display_name=f"User {n}") for n in (1, 2, 3)))
        users.add(session, resource("r1", "u1", minutes=1), resource("r2", "u2", minutes=2),
                  resource("r3", "u3", idp="other"), resource("d1", "u1", deleted=True))
        users.add(session, *scim_group("g1", "Eng", minutes=1), *scim_group("g2", "Ops", minutes=2),
                  *scim_group("g3", "Eng", idp="other"))
        users.add(session, *(GroupMembership(user_id=u, group_id=g)
                             for u, g in (("u1", "g1"), ("u2", "g1"), ("u1", "g2"), ("u3", "g3"))))


def test_users_are_found_live_and_only_at_their_idp(database: Database) -> None:
    provisioned(database)
    with database.transaction() as session:
        assert scim.live_user(session, OKTA, "r1").user_id == "u1"
        assert scim.live_user(session, OKTA, "r3") is None and scim.live_user(session, OKTA, "d1") is None
        assert scim.live_user(session, OKTA, "r2", for_update=True).id == "r2"
        assert scim.live_user_where(session, OKTA, user_name_key="r2").id == "r2"
        assert scim.live_user_where(session, OKTA, external_id="ext-r1", user_id="u1").id == "r1"
        assert scim.live_user_where(session, OKTA, user_id="u3") is None
        assert scim.last_deleted_user(session, OKTA, "u1").id == "d1"
        assert scim.last_deleted_user(session, OKTA, "u2") is None
        assert set(scim.live_users_by_scim_id(session, OKTA, ["r1", "r3", "d1", "r1"])) == {"r1"}
        assert scim.live_users_by_scim_id(session, OKTA, []) == {}


def test_find_users_pages_oldest_first_with_the_total(database: Database) -> None:
    provisioned(database)
    with database.transaction() as session:
        total, page = scim.find_users(session, OKTA, [], 0, 10)
        assert total == 2 and [(r.id, u.id) for r, u in page] == [("r1", "u1"), ("r2", "u2")]
        assert all(type(r) is ScimUser and type(u) is User for r, u in page)
        assert [r.id for r, _ in scim.find_users(session, OKTA, [], 1, 10)[1]] == ["r2"]
        assert scim.find_users(session, OKTA, [], 0, 0) == (2, [])
        assert scim.find_users(session, OKTA, [], 5, 10) == (2, [])
        assert [r.id for r, _ in scim.find_users(session, OKTA, [("userName", "r2")], 0, 10)[1]] == ["r2"]
        assert scim.find_users(session, OKTA, [("externalId", "ext-r3")], 0, 10) == (0, [])
        assert scim.find_users(session, OKTA, [("id", "r1"), ("userName", "r2")], 0, 10) == (0, [])


def test_groups_and_their_members_at_one_idp(database: Database) -> None:
    provisioned(database)
    with database.transaction() as session:
        assert {u: [g.id for g in gs] for u, gs in scim.groups_of(session, OKTA, ["u1", "u3"]).items()} == {
            "u1": ["g1", "g2"], "u3": []}
        found = scim.group(session, OKTA, "g1")
        assert found is not None and (found[0].name, found[1].idp_id) == ("Eng", OKTA)
        assert scim.group(session, OKTA, "g3") is None and scim.group(session, OKTA, "g2", for_update=True)
        assert scim.group_named(session, OKTA, "Ops").id == "g2" and scim.group_named(session, OKTA, "ops") is None
        total, page = scim.find_groups(session, OKTA, [], 0, 10)
        assert total == 2 and [g.id for g, _ in page] == ["g1", "g2"]
        assert [g.id for g, _ in scim.find_groups(session, OKTA, [("displayName", "eng")], 0, 10)[1]] == ["g1"]
        assert [g.id for g, _ in scim.find_groups(session, OKTA, [("members", "r2")], 0, 10)[1]] == ["g1"]
        assert [g.id for g, _ in scim.find_groups(session, OKTA, [("externalId", "ext-g2")], 0, 10)[1]] == ["g2"]
        members = scim.members_of(session, OKTA, ["g1", "g3"])
        assert {g: [(r.id, u.id) for r, u in m] for g, m in members.items()} == {
            "g1": [("r1", "u1"), ("r2", "u2")], "g3": []}
        assert scim.member_user_ids(session, "g1") == {"u1", "u2"}


def test_membership_changes_and_group_deletion(database: Database) -> None:
    provisioned(database)
    with database.transaction() as session:
        scim.change_members(session, "g2", add=["u2"], remove=["u1"])
        assert scim.leave_groups(session, OKTA, "u2") == ["g1", "g2"]
        assert scim.leave_groups(session, OKTA, "u3") == []  # g3 is another IdP's
    with database.transaction() as session:
        assert (scim.member_user_ids(session, "g1"), scim.member_user_ids(session, "g2")) == ({"u1"}, set())
        scim.delete_group(session, "g1")
    with database.transaction() as session:
        assert scim.group(session, OKTA, "g1") is None and scim.member_user_ids(session, "g1") == set()
        assert scim.member_user_ids(session, "g3") == {"u3"}
