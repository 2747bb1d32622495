"""SCIM Groups, as Okta (Push Groups) and Entra ID drive them; memberships are what policy reads."""

from __future__ import annotations

import pytest

from broker.storage import users
from broker.storage.models import Group, ScimUser
from tests.conftest import ISSUER
from tests.flows.test_scim_helpers import (
    CORP_TOKEN,
    GROUP_SCHEMA,
    Scim,
    assert_scim_error,
    audit_events,
    entra_user,
    okta_user,
    scim_settings,
    tokens_via_test_idp,
)
from tests.support.oauth_flow import register_client


@pytest.fixture
def settings(make_settings):
    return scim_settings(make_settings)


def groups_of(state, scim_id: str) -> list[str]:
    with state.database.sessions() as session:
        return users.group_names(session, session.get(ScimUser, scim_id).user_id)


async def provision(scim: Scim, *names: str) -> dict[str, str]:
    """SCIM ids of users alice, bob, carol (externalId = the test IdP's subject)."""
    return {name: (await scim.post("/Users", okta_user(f"{name}@example.com", name))).json()["id"] for name in names}


async def test_okta_group_push(client, state) -> None:
    scim = Scim(client)
    ids = await provision(scim, "alice", "bob")
    created = await scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Platform", "members": []})
    assert created.status_code == 201 and created.headers["location"].endswith(f"/Groups/{created.json()['id']}")
    group_id = created.json()["id"]
    added = await scim.patch(f"/Groups/{group_id}", {"op": "add", "path": "members", "value": [
        {"value": ids["alice"], "display": "alice@example.com"}, {"value": ids["bob"], "display": "bob@example.com"}]})
    assert added.status_code == 204, added.text
    members = (await scim.get(f"/Groups/{group_id}")).json()["members"]
    assert {m["value"] for m in members} == set(ids.values())
    assert "Platform" in groups_of(state, ids["alice"]) and "Platform" in groups_of(state, ids["bob"])

    await scim.patch(f"/Groups/{group_id}", {"op": "remove", "path": f'members[value eq "{ids["bob"]}"]'})
    assert [m["value"] for m in (await scim.get(f"/Groups/{group_id}")).json()["members"]] == [ids["alice"]]
    assert "Platform" not in groups_of(state, ids["bob"])
    # Okta renames with a path-less replace that repeats the id.
    renamed = await scim.patch(f"/Groups/{group_id}", {"op": "replace", "value": {"id": group_id,
                                                                                   "displayName": "Platform Eng"}})
    assert renamed.status_code == 204
    assert (await scim.get(f"/Groups/{group_id}")).json()["displayName"] == "Platform Eng"
    assert "Platform Eng" in groups_of(state, ids["alice"])
    alice = (await scim.get(f"/Users/{ids['alice']}")).json()
    assert alice["groups"] == [{"value": group_id, "$ref": f"{ISSUER}/scim/v2/Groups/{group_id}",
                                "display": "Platform Eng", "type": "direct"}]

    assert (await scim.delete(f"/Groups/{group_id}")).status_code == 204
    assert_scim_error(await scim.get(f"/Groups/{group_id}"), 404)
    assert groups_of(state, ids["alice"]) == []
    kinds = [e.event_type for e in audit_events(state, "scim.group.")]
    assert kinds == ["scim.group.created", "scim.group.updated", "scim.group.updated", "scim.group.updated",
                     "scim.group.deleted"]
    first_update = audit_events(state, "scim.group.updated")[0]
    assert first_update.data["members_added"] and first_update.data["members_removed"] == []
    assert audit_events(state, "scim.group.deleted")[0].data["display_name"] == "Platform Eng"


async def test_entra_group_provisioning(client, state) -> None:
    scim = Scim(client)
    ids = {name: (await scim.post("/Users", entra_user(f"{name}@example.com", name))).json()["id"]
           for name in ("alice", "bob", "carol")}
    query = {"filter": 'displayName eq "Sales EMEA"', "excludedAttributes": "members"}
    assert (await scim.get("/Groups", **query)).json()["totalResults"] == 0
    object_id = "7d6a4f5e-0000-4c4c-9b1a-1c2d3e4f5a6b"
    created = await scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "externalId": object_id,
                                          "displayName": "Sales EMEA", "members": [{"value": ids["alice"]}],
                                          "meta": {"resourceType": "Group"}})
    assert created.status_code == 201, created.text
    group_id = created.json()["id"]
    listed = (await scim.get("/Groups", filter='displayName eq "sales emea"', excludedAttributes="members")).json()
    assert listed["totalResults"] == 1 and "members" not in listed["Resources"][0]
    assert (await scim.get("/Groups", filter=f'externalId eq "{object_id}"')).json()["totalResults"] == 1
    await scim.patch(f"/Groups/{group_id}", {"op": "Add", "path": "members",
                                             "value": [{"value": ids["bob"]}, {"value": ids["carol"]}]})
    # Entra removes members with a value, not a path filter.
    await scim.patch(f"/Groups/{group_id}", {"op": "Remove", "path": "members", "value": [{"value": ids["alice"]}]})
    assert "Sales EMEA" not in groups_of(state, ids["alice"]) and "Sales EMEA" in groups_of(state, ids["carol"])
    member_check = f'id eq "{group_id}" and members eq "{ids["bob"]}"'
    assert (await scim.get("/Groups", filter=member_check, excludedAttributes="members")).json()["totalResults"] == 1
    gone_check = f'id eq "{group_id}" and members eq "{ids["alice"]}"'
    assert (await scim.get("/Groups", filter=gone_check)).json()["totalResults"] == 0
    await scim.patch(f"/Groups/{group_id}", {"op": "Replace", "path": "displayName", "value": "Sales"})
    assert "Sales" in groups_of(state, ids["bob"]) and "Sales EMEA" not in groups_of(state, ids["bob"])
    replaced = await scim.put(f"/Groups/{group_id}", {"schemas": [GROUP_SCHEMA], "displayName": "Sales",
                                                      "externalId": object_id, "members": [{"value": ids["alice"]}]})
    assert [m["value"] for m in replaced.json()["members"]] == [ids["alice"]]
    assert groups_of(state, ids["bob"]) == [] and groups_of(state, ids["alice"]) == ["Sales"]


async def test_membership_feeds_policy(client, state) -> None:
    """Policy decides on ``oauth.subjects.user_subject(...).groups``: SCIM membership changes show there."""
    from broker.oauth.subjects import user_subject
    from broker.storage.models import User

    def policy_groups(scim_id: str) -> frozenset[str]:
        with state.database.sessions() as session:
            return user_subject(session, session.get(User, session.get(ScimUser, scim_id).user_id)).groups

    scim = Scim(client)
    ids = await provision(scim, "bob")
    group_id = (await scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "engineering",
                                            "members": [{"value": ids["bob"]}]})).json()["id"]
    assert policy_groups(ids["bob"]) == {"engineering"}
    await tokens_via_test_idp(client, register_client(state, trusted=True).row.id, "bob")
    assert policy_groups(ids["bob"]) == {"engineering", "sales"}  # the IdP's groups join, SCIM's stay
    await scim.patch(f"/Groups/{group_id}", {"op": "remove", "path": f'members[value eq "{ids["bob"]}"]'})
    assert policy_groups(ids["bob"]) == {"sales"}


async def test_idp_groups_and_scim_groups_do_not_touch_each_other(client, state) -> None:
    """A login replaces the user's ``idp:test`` groups only; SCIM changes only ``scim:test`` ones."""
    scim = Scim(client)
    ids = await provision(scim, "alice")
    await scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Platform",
                                "members": [{"value": ids["alice"]}]})
    await tokens_via_test_idp(client, register_client(state, trusted=True).row.id, "alice")
    assert groups_of(state, ids["alice"]) == ["Platform", "engineering"]
    with state.database.sessions() as session:
        sources = {g.name: g.source for g in session.query(Group)}
    assert sources == {"Platform": "scim:test", "engineering": "idp:test"}


async def test_deleting_a_user_takes_them_out_of_the_idps_groups(client, state) -> None:
    scim = Scim(client)
    ids = await provision(scim, "alice", "bob")
    group_id = (await scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Platform",
                                            "members": [{"value": ids["alice"]}, {"value": ids["bob"]}]})).json()["id"]
    await scim.delete(f"/Users/{ids['alice']}")
    assert [m["value"] for m in (await scim.get(f"/Groups/{group_id}")).json()["members"]] == [ids["bob"]]
    assert groups_of(state, ids["alice"]) == []


async def test_groups_are_per_idp(client, state) -> None:
    scim, corp = Scim(client), Scim(client, CORP_TOKEN)
    group_id = (await scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Platform"})).json()["id"]
    assert_scim_error(await corp.get(f"/Groups/{group_id}"), 404)
    assert (await corp.get("/Groups")).json()["totalResults"] == 0
    assert (await corp.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Platform"})).status_code == 201
    ids = await provision(scim, "alice")
    foreign = await corp.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Other",
                                          "members": [{"value": ids["alice"]}]})
    assert_scim_error(foreign, 400, "invalidValue")  # another IdP's user is not a member it can name
