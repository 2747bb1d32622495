"""SCIM details real provisioning clients and testers check: Entra's group schema, ``$ref``, what may be removed,
and an ``externalId`` error that says what to map."""

from __future__ import annotations

import pytest

from tests.conftest import ISSUER
from tests.flows.test_scim_helpers import (
    GROUP_SCHEMA,
    Scim,
    assert_scim_error,
    audit_events,
    entra_user,
    okta_user,
    scim_settings,
    state_of,
)

ADSCIM_SCHEMAS = ["urn:ietf:params:scim:schemas:extension:ADSCIM:2.0:Group",
                  "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"]


@pytest.fixture
def settings(make_settings):
    return scim_settings(make_settings)


@pytest.mark.parametrize("adscim", ADSCIM_SCHEMAS)
async def test_entra_creates_a_group_naming_its_adscim_schema(client, state, adscim: str) -> None:
    scim = Scim(client)
    created = await scim.post("/Groups", {"schemas": [GROUP_SCHEMA, adscim],
                                          "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                                          "displayName": "Group1", "meta": {"resourceType": "Group"}})
    assert created.status_code == 201, created.text
    assert created.json()["schemas"] == [GROUP_SCHEMA]
    assert [e.event_type for e in audit_events(state, "scim.group.")] == ["scim.group.created"]
    replaced = await scim.put(f"/Groups/{created.json()['id']}", {"schemas": [GROUP_SCHEMA, adscim],
                                                                  "displayName": "Group 1", "externalId": "8aa1"})
    assert replaced.status_code == 200, replaced.text


async def test_an_extension_that_carries_attributes_is_still_refused(client, state) -> None:
    before = state_of(state)
    refused = await Scim(client).post("/Groups", {"schemas": [GROUP_SCHEMA, ADSCIM_SCHEMAS[0]], "displayName": "G",
                                                  ADSCIM_SCHEMAS[0]: {"mailNickname": "g"}})
    assert_scim_error(refused, 400, "invalidSyntax")
    assert state_of(state) == before


async def test_members_and_groups_carry_ref(client, state) -> None:
    scim = Scim(client)
    alice = (await scim.post("/Users", entra_user())).json()["id"]
    group = (await scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Platform",
                                         "members": [{"value": alice}]})).json()
    assert group["members"] == [{"value": alice, "$ref": f"{ISSUER}/scim/v2/Users/{alice}", "type": "User",
                                 "display": "Alice Anders"}]
    listed = (await scim.get("/Groups", filter=f'id eq "{group["id"]}"')).json()["Resources"][0]
    assert listed["members"][0]["$ref"] == f"{ISSUER}/scim/v2/Users/{alice}"
    user = (await scim.get(f"/Users/{alice}")).json()
    assert user["groups"] == [{"value": group["id"], "$ref": f"{ISSUER}/scim/v2/Groups/{group['id']}",
                               "display": "Platform", "type": "direct"}]
    # An IdP sends members back with the $ref it read: accepted, same members.
    assert (await scim.put(f"/Groups/{group['id']}", {**group, "schemas": [GROUP_SCHEMA]})).status_code == 200


@pytest.mark.parametrize("operation,reason", [
    ({"op": "remove", "path": "active"}, "active cannot be removed: replace it with false"),
    ({"op": "Remove", "path": "active"}, "active cannot be removed: replace it with false"),
    ({"op": "remove", "path": "externalId"}, "externalId cannot be removed: it is the user's subject at the IdP"),
    ({"op": "replace", "path": "externalId", "value": "mallory"}, "externalId cannot change: it is the user's"),
    ({"op": "add", "path": "externalId", "value": "mallory"}, "externalId cannot change: it is the user's"),
])
async def test_active_and_external_id_cannot_be_removed_and_the_error_says_why(client, state, operation: dict,
                                                                               reason: str) -> None:
    scim = Scim(client)
    alice = (await scim.post("/Users", okta_user())).json()["id"]
    before = state_of(state)
    error = assert_scim_error(await scim.patch(f"/Users/{alice}", operation), 400, "mutability")
    assert error["detail"].startswith(reason), error["detail"]
    assert state_of(state) == before


async def test_a_user_without_external_id_is_told_what_to_map(client, state) -> None:
    body = okta_user()
    del body["externalId"]
    error = assert_scim_error(await Scim(client).post("/Users", body), 400, "invalidValue")
    assert error["detail"].startswith("externalId is required: it is the user's subject at the IdP")
    assert "Okta: the user id" in error["detail"] and "Entra ID: map objectId to externalId" in error["detail"]
