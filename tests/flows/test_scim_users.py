"""SCIM Users, as Okta and Entra ID drive them: provision, find, deactivate (offboard at once), reactivate, delete."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from broker.lifecycle import offboarding
from broker.storage.models import ScimUser, UpstreamIdentity, User, utcnow
from tests.flows.test_scim_helpers import (
    CORP_TOKEN,
    ENTERPRISE,
    MEDIA_TYPE,
    USER_SCHEMA,
    Scim,
    assert_scim_error,
    audit_events,
    entra_user,
    okta_user,
    scim_settings,
    tokens_via_test_idp,
)
from tests.support.oauth_flow import refresh, register_client


@pytest.fixture
def max_page_size() -> int:
    return 200


@pytest.fixture
def settings(make_settings, max_page_size):
    return scim_settings(make_settings, max_page_size=max_page_size)


def broker_user(state, scim_id: str) -> User:
    with state.database.sessions() as session:
        row = session.get(ScimUser, scim_id)
        return session.get(User, row.user_id)


async def signed_in(client, state, username: str = "alice") -> tuple[str, dict]:
    """A client's tokens for the user after a login through the test IdP (chosen by the login hint)."""
    app_client = register_client(state, trusted=True)
    return app_client.row.id, await tokens_via_test_idp(client, app_client.row.id, username)


async def test_okta_provisions_deactivates_and_reactivates(client, state) -> None:
    scim = Scim(client)
    # Okta's import check, then the create.
    assert (await scim.get("/Users", filter='userName eq "alice@example.com"', startIndex=1, count=100)).json()[
        "totalResults"] == 0
    created = await scim.post("/Users", okta_user())
    assert created.status_code == 201 and created.headers["content-type"].startswith(MEDIA_TYPE)
    body = created.json()
    assert created.headers["location"] == f"http://127.0.0.1:8000/scim/v2/Users/{body['id']}"
    assert body["userName"] == "alice@example.com" and body["active"] is True and "password" not in body
    assert body["meta"]["resourceType"] == "User" and body["externalId"] == "alice"
    found = (await scim.get("/Users", filter='userName eq "ALICE@Example.com"')).json()
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == body["id"]

    client_id, tokens = await signed_in(client, state)  # the login lands on the provisioned user
    deactivated = await scim.patch(f"/Users/{body['id']}", {"op": "replace", "value": {"active": False}})
    assert deactivated.status_code == 200 and deactivated.json()["active"] is False
    user = broker_user(state, body["id"])
    assert user.status == "offboarded" and user.offboard_reason == "deactivated in the IdP (SCIM)"
    assert (await refresh(client, client_id, tokens["refresh_token"])).json()["error"] == "invalid_grant"

    reactivated = await scim.patch(f"/Users/{body['id']}", {"op": "replace", "value": {"active": True}})
    assert reactivated.json()["active"] is True and broker_user(state, body["id"]).status == "active"
    assert (await refresh(client, client_id, tokens["refresh_token"])).json()["error"] == "invalid_grant"
    assert (await signed_in(client, state))[1]["access_token"]  # signing in again works
    events = [(e.event_type, e.actor) for e in audit_events(state, "")
              if e.event_type.startswith(("scim.", "user."))]
    assert events == [("scim.user.created", "scim:test"), ("user.offboarded", "scim:test"),
                      ("scim.user.deactivated", "scim:test"), ("user.restored", "scim:test"),
                      ("scim.user.reactivated", "scim:test")]


async def test_okta_put_with_active_false_offboards(client, state) -> None:
    scim = Scim(client)
    created = (await scim.post("/Users", okta_user())).json()
    client_id, tokens = await signed_in(client, state)
    # Okta's PUT carries the whole user, id and password included.
    replaced = await scim.put(f"/Users/{created['id']}", okta_user(id=created["id"], active=False,
                                                                   displayName="Alice A. Anders"))
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["active"] is False and replaced.json()["displayName"] == "Alice A. Anders"
    user = broker_user(state, created["id"])
    assert user.status == "offboarded" and user.display_name == "Alice A. Anders"
    assert (await refresh(client, client_id, tokens["refresh_token"])).json()["error"] == "invalid_grant"
    [updated] = [e for e in audit_events(state) if e.event_type == "scim.user.updated"]
    assert updated.data == {"scim_id": created["id"], "before": {"displayName": "Alice Anders"},
                            "after": {"displayName": "Alice A. Anders"}}
    assert all("1mz050nq" not in str(e.data) for e in audit_events(state, ""))  # the password is nowhere
    with state.database.sessions() as session:
        assert "password" not in session.get(ScimUser, created["id"]).attributes


async def test_entra_soft_delete_then_delete(client, state) -> None:
    scim = Scim(client)
    assert (await scim.get("/Users", filter='userName eq "alice@example.com"')).json()["Resources"] == []
    created = await scim.post("/Users", entra_user())
    assert created.status_code == 201, created.text
    scim_id = created.json()["id"]
    assert created.json()[ENTERPRISE] == {"department": "Engineering", "employeeNumber": "1001"}
    updated = await scim.patch(f"/Users/{scim_id}",
                               {"op": "Replace", "path": "displayName", "value": "Alice Anders-Berg"},
                               {"op": "Add", "path": 'emails[type eq "home"].value', "value": "alice@home.example"},
                               {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "Platform"})
    assert updated.status_code == 200, updated.text
    assert updated.json()[ENTERPRISE]["department"] == "Platform"
    assert {e["value"] for e in updated.json()["emails"]} == {"alice@example.com", "alice@home.example"}
    client_id, tokens = await signed_in(client, state)

    # Entra disables (unassigned, out of scope, soft deleted, blocked) with the string "False".
    disabled = await scim.patch(f"/Users/{scim_id}", {"op": "Replace", "path": "active", "value": "False"})
    assert disabled.status_code == 200 and disabled.json()["active"] is False
    assert broker_user(state, scim_id).status == "offboarded"
    assert (await refresh(client, client_id, tokens["refresh_token"])).json()["error"] == "invalid_grant"

    # ... and deletes 30 days later.
    assert (await scim.delete(f"/Users/{scim_id}")).status_code == 204
    assert_scim_error(await scim.get(f"/Users/{scim_id}"), 404)
    assert_scim_error(await scim.delete(f"/Users/{scim_id}"), 404)
    assert (await scim.get("/Users", filter='externalId eq "alice"')).json()["totalResults"] == 0
    user = broker_user(state, scim_id)  # kept for the audit trail
    assert user.status == "offboarded" and user.email == "alice@example.com"
    deleted = [e for e in audit_events(state) if e.event_type == "scim.user.deleted"]
    assert [e.data["external_id"] for e in deleted] == ["alice"] and deleted[0].user_id == user.id


async def test_entra_default_attribute_mappings(client, state) -> None:
    """What Entra's default user mapping sends, the manager as a bare id included."""
    scim = Scim(client)
    manager = (await scim.post("/Users", entra_user("carol@example.com", "carol"))).json()["id"]
    created = await scim.post("/Users", entra_user(**{ENTERPRISE: {"department": "Eng", "manager": manager}}))
    assert created.status_code == 201, created.text
    assert created.json()[ENTERPRISE]["manager"]["value"] == manager
    scim_id = created.json()["id"]
    updated = await scim.patch(f"/Users/{scim_id}",
                               {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": manager},
                               {"op": "Add", "path": 'addresses[type eq "work"].streetAddress', "value": "1 Main St"},
                               {"op": "Add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 555 0100"},
                               {"op": "Replace", "path": "name.formatted", "value": "Alice B. Anders"},
                               {"op": "Add", "value": {"title": "Staff Engineer", "name.givenName": "Ally"}})
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert body["addresses"] == [{"streetAddress": "1 Main St", "type": "work"}]
    assert body["title"] == "Staff Engineer" and body["name"]["givenName"] == "Ally"
    assert (await scim.patch(f"/Users/{scim_id}", {"op": "Remove", "path": f"{ENTERPRISE}:manager"})).status_code \
        == 200


async def test_entra_disable_and_enable_with_strings(client, state) -> None:
    scim = Scim(client)
    scim_id = (await scim.post("/Users", entra_user())).json()["id"]
    await scim.patch(f"/Users/{scim_id}", {"op": "Replace", "path": "active", "value": "False"})
    assert broker_user(state, scim_id).status == "offboarded"
    enabled = await scim.patch(f"/Users/{scim_id}", {"op": "Replace", "path": "active", "value": "True"})
    assert enabled.json()["active"] is True and broker_user(state, scim_id).status == "active"


async def test_delete_offboards_at_once(client, state) -> None:
    scim = Scim(client)
    scim_id = (await scim.post("/Users", okta_user())).json()["id"]
    client_id, tokens = await signed_in(client, state)
    assert (await scim.delete(f"/Users/{scim_id}")).status_code == 204
    assert broker_user(state, scim_id).status == "offboarded"
    assert (await refresh(client, client_id, tokens["refresh_token"])).json()["error"] == "invalid_grant"


async def test_a_provisioned_user_who_signs_in_is_the_same_broker_user(client, state) -> None:
    scim_id = (await Scim(client).post("/Users", okta_user(external_id="alice"))).json()["id"]
    await signed_in(client, state)  # the test IdP's subject for alice is "alice"
    with state.database.sessions() as session:
        row = session.get(ScimUser, scim_id)
        assert session.scalar(select(func.count()).select_from(User)) == 1
        identity = session.scalars(select(UpstreamIdentity)).one()
        assert (identity.user_id, identity.idp_id, identity.subject) == (row.user_id, "test", "alice")
        assert identity.last_login_at is not None


async def test_a_user_who_signed_in_first_is_linked_not_duplicated(client, state) -> None:
    await signed_in(client, state)
    created = await Scim(client).post("/Users", okta_user())
    assert created.status_code == 201
    with state.database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1
    [event] = [e for e in audit_events(state) if e.event_type == "scim.user.created"]
    assert event.data["linked_existing_user"] is True


async def test_reactivation_never_undoes_a_revocation_made_at_the_broker(client, state) -> None:
    scim = Scim(client)
    scim_id = (await scim.post("/Users", okta_user())).json()["id"]
    user_id = broker_user(state, scim_id).id
    with state.database.transaction() as session:  # security's own revocation, before the IdP deactivates
        offboarding.revoke_user(session, user_id, reason="incident", actor="cli:sec",
                                now=utcnow())
    await scim.patch(f"/Users/{scim_id}", {"op": "replace", "path": "active", "value": False})
    again = await scim.patch(f"/Users/{scim_id}", {"op": "replace", "path": "active", "value": True})
    assert again.status_code == 200 and again.json()["active"] is True
    assert broker_user(state, scim_id).status == "offboarded"
    [event] = [e for e in audit_events(state) if e.event_type == "scim.user.reactivated"]
    assert event.data["restored"] is False and "kept_offboarded" in event.data


async def test_reactivation_does_not_lift_a_revocation_made_after_scims(client, state) -> None:
    scim = Scim(client)
    scim_id = (await scim.post("/Users", okta_user())).json()["id"]
    await scim.patch(f"/Users/{scim_id}", {"op": "replace", "value": {"active": False}})
    with state.database.transaction() as session:
        offboarding.revoke_user(session, broker_user(state, scim_id).id, reason="incident", actor="cli:sec",
                                now=utcnow())
    await scim.patch(f"/Users/{scim_id}", {"op": "replace", "value": {"active": True}})
    assert broker_user(state, scim_id).status == "offboarded"


async def test_deleted_then_provisioned_again_is_a_new_resource_over_the_same_user(client, state) -> None:
    scim = Scim(client)
    first = (await scim.post("/Users", entra_user())).json()["id"]
    assert (await scim.delete(f"/Users/{first}")).status_code == 204
    second = await scim.post("/Users", entra_user())
    assert second.status_code == 201 and second.json()["id"] != first
    assert broker_user(state, second.json()["id"]).id == broker_user(state, first).id
    assert broker_user(state, first).status == "active"  # what SCIM took away, SCIM gives back
    assert_scim_error(await scim.get(f"/Users/{first}"), 404)


async def test_created_inactive_is_offboarded_from_the_start(client, state) -> None:
    created = await Scim(client).post("/Users", okta_user(active=False))
    assert created.status_code == 201 and created.json()["active"] is False
    assert broker_user(state, created.json()["id"]).status == "offboarded"


async def test_profile_mapping(client, state) -> None:
    scim = Scim(client)
    plain = await scim.post("/Users", {"schemas": [USER_SCHEMA], "userName": "carol.chen@example.com",
                                       "externalId": "carol", "name": {"formatted": "Carol Chen"}})
    user = broker_user(state, plain.json()["id"])
    assert (user.email, user.display_name) == (None, "Carol Chen")  # a directory push vouches for no address
    handle = await scim.post("/Users", {"schemas": [USER_SCHEMA], "userName": "BBrown", "externalId": "bob",
                                        "name": {"givenName": "Bob", "familyName": "Brown"},
                                        "emails": [{"value": "b@other.example", "type": "home"},
                                                   {"value": "bob@example.com", "type": "work", "primary": True}]})
    user = broker_user(state, handle.json()["id"])
    assert (user.email, user.display_name) == (None, "Bob Brown")
    assert [e["value"] for e in handle.json()["emails"]] == ["b@other.example", "bob@example.com"]  # kept as sent
    renamed = await scim.patch(f"/Users/{handle.json()['id']}", {"op": "replace", "path": "userName",
                                                                   "value": "bob.brown"})
    assert renamed.json()["userName"] == "bob.brown"
    assert (await scim.get("/Users", filter='userName eq "BOB.BROWN"')).json()["totalResults"] == 1


@pytest.mark.parametrize("max_page_size", [3])
async def test_pagination(client, state) -> None:
    scim = Scim(client)
    ids = [(await scim.post("/Users", okta_user(f"user{i}@example.com", f"u{i}"))).json()["id"] for i in range(5)]
    page = (await scim.get("/Users", startIndex=1, count=2)).json()
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (5, 1, 2)
    assert [r["id"] for r in page["Resources"]] == ids[:2]
    last = (await scim.get("/Users", startIndex=5, count=2)).json()
    assert [r["id"] for r in last["Resources"]] == ids[4:]
    capped = (await scim.get("/Users", count=100)).json()  # RFC 7644 §3.4.2.4: capped at the page size
    assert capped["itemsPerPage"] == 3 and len(capped["Resources"]) == 3
    unpaged = (await scim.get("/Users")).json()
    assert unpaged["itemsPerPage"] == 3 and unpaged["totalResults"] == 5
    none = (await scim.get("/Users", count=0)).json()
    assert none["totalResults"] == 5 and none["itemsPerPage"] == 0 and not none.get("Resources")
    beyond = (await scim.get("/Users", startIndex=50)).json()
    assert beyond["totalResults"] == 5 and not beyond.get("Resources")
    assert (await scim.get("/ServiceProviderConfig")).json()["filter"]["maxResults"] == 3


async def test_attributes_and_excluded_attributes(client, state) -> None:
    scim = Scim(client)
    scim_id = (await scim.post("/Users", okta_user())).json()["id"]
    only = (await scim.get(f"/Users/{scim_id}", attributes="userName")).json()
    assert set(only) == {"schemas", "id", "userName"}
    without = (await scim.get("/Users", excludedAttributes="emails,name")).json()["Resources"][0]
    assert "emails" not in without and "name" not in without and without["userName"] == "alice@example.com"


async def test_each_idp_sees_only_what_it_provisioned(client, state) -> None:
    scim, corp = Scim(client), Scim(client, CORP_TOKEN)
    scim_id = (await scim.post("/Users", okta_user())).json()["id"]
    assert_scim_error(await corp.get(f"/Users/{scim_id}"), 404)
    assert_scim_error(await corp.patch(f"/Users/{scim_id}", {"op": "replace", "value": {"active": False}}), 404)
    assert (await corp.get("/Users")).json()["totalResults"] == 0
    theirs = await corp.post("/Users", okta_user())  # same userName and externalId, another IdP: another user
    assert theirs.status_code == 201
    assert broker_user(state, theirs.json()["id"]).id != broker_user(state, scim_id).id
    assert broker_user(state, scim_id).status == "active"


async def test_discovery_endpoints(client) -> None:
    scim = Scim(client)
    config = (await scim.get("/ServiceProviderConfig")).json()
    assert config["patch"]["supported"] is True and config["bulk"]["supported"] is False
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = (await scim.get("/ResourceTypes")).json()
    assert {t["name"] for t in types["Resources"]} == {"User", "Group"}
    user_type = (await scim.get("/ResourceTypes/User")).json()
    assert user_type["endpoint"] == "/Users" and user_type["schemaExtensions"][0]["schema"] == ENTERPRISE
    schemas = (await scim.get("/Schemas")).json()
    assert {s["id"] for s in schemas["Resources"]} == {USER_SCHEMA, ENTERPRISE,
                                                       "urn:ietf:params:scim:schemas:core:2.0:Group"}
    user_schema = (await scim.get(f"/Schemas/{USER_SCHEMA}")).json()
    assert any(a["name"] == "userName" for a in user_schema["attributes"])
    assert_scim_error(await scim.get("/Schemas/urn:example:nope"), 404)
    assert_scim_error(await scim.get("/ResourceTypes/Printer"), 404)


async def test_openapi_documents_every_scim_endpoint_with_errors(client) -> None:
    document = (await client.get("/openapi.json")).json()
    operations = {(method, path): op for path, item in document["paths"].items() for method, op in item.items()
                  if path.startswith("/scim/v2")}
    expected = {("get", "/scim/v2/ServiceProviderConfig"), ("get", "/scim/v2/ResourceTypes"),
                ("get", "/scim/v2/ResourceTypes/{name}"), ("get", "/scim/v2/Schemas"),
                ("get", "/scim/v2/Schemas/{urn}")}
    for kind, key in (("Users", "user_id"), ("Groups", "group_id")):
        expected |= {("post", f"/scim/v2/{kind}"), ("get", f"/scim/v2/{kind}"), ("get", f"/scim/v2/{kind}/{{{key}}}"),
                     ("put", f"/scim/v2/{kind}/{{{key}}}"), ("patch", f"/scim/v2/{kind}/{{{key}}}"),
                     ("delete", f"/scim/v2/{kind}/{{{key}}}")}
    assert set(operations) == expected
    for key, operation in operations.items():
        assert {"400", "401"} <= set(operation["responses"]), key
        if key[0] in ("post", "put", "patch"):
            assert {"409", "415"} <= set(operation["responses"]), key
            assert MEDIA_TYPE in operation["requestBody"]["content"], key
