"""Refused SCIM requests: the RFC 7644 §3.12 error shape, never a 500, and nothing changed."""

from __future__ import annotations

import json
import random

import pytest

from tests.flows.test_scim_helpers import (
    BASE,
    CORP_TOKEN,
    ENTERPRISE,
    GROUP_SCHEMA,
    PATCH_SCHEMA,
    TOKEN,
    USER_SCHEMA,
    Scim,
    assert_scim_error,
    audit_events,
    entra_user,
    okta_user,
    scim_settings,
    state_of,
)


@pytest.fixture
def settings(make_settings):
    return scim_settings(make_settings)


@pytest.fixture
async def seeded(client, state):
    """alice and bob provisioned (alice with tokens to lose), group Platform with alice; the SCIM ids."""
    scim = Scim(client)
    alice = (await scim.post("/Users", okta_user())).json()["id"]
    bob = (await scim.post("/Users", okta_user("bob@example.com", "bob"))).json()["id"]
    group = (await scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Platform",
                                         "members": [{"value": alice}]})).json()["id"]
    return {"alice": alice, "bob": bob, "group": group}


# ------------------------------------------------------------------ authentication


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", f"Basic {TOKEN}", f"bearer-{TOKEN}", "Bearer not-the-token",
    f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Bearer {TOKEN.upper()}", "Bearer change-me",
], ids=["none", "empty", "no-token", "blank-token", "basic", "no-space", "other", "cut", "longer", "upper",
        "placeholder"])  # fixed ids: the random token would name the tests differently in each xdist worker
async def test_bad_credentials_are_401_and_change_nothing(client, state, seeded, authorization) -> None:
    before = state_of(state)
    headers = {"content-type": "application/scim+json"}
    if authorization is not None:
        headers["authorization"] = authorization
    for method, path, body in (("GET", "/Users", None), ("POST", "/Users", okta_user("eve@example.com", "eve")),
                               ("PATCH", f"/Users/{seeded['alice']}", {"schemas": [PATCH_SCHEMA], "Operations": [
                                   {"op": "replace", "value": {"active": False}}]}),
                               ("DELETE", f"/Users/{seeded['alice']}", None), ("GET", "/ServiceProviderConfig", None),
                               ("GET", "/Nope", None)):
        response = await client.request(method, BASE + path, headers=headers,
                                        content=None if body is None else json.dumps(body))
        assert_scim_error(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer ")
    assert state_of(state) == before
    assert not audit_events(state, "scim.request.rejected")  # an unauthenticated caller writes nothing at all


async def test_the_token_never_reaches_logs_or_the_audit_trail(client, state, seeded, caplog) -> None:
    scim = Scim(client)
    await scim.patch(f"/Users/{seeded['alice']}", {"op": "replace", "value": {"active": False}})
    await scim.post("/Users", {"not": "valid"})
    await client.get(f"{BASE}/Users", headers={"authorization": "Bearer wrong"})
    assert TOKEN not in caplog.text
    assert all(TOKEN not in json.dumps(e.data) for e in audit_events(state, ""))


async def test_scim_is_off_unless_enabled(make_settings, state) -> None:
    import httpx

    from broker.web import create_app

    app = create_app(type(state)(**{**state.__dict__, "settings": make_settings()}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as http:
        response = await http.get(f"{BASE}/Users", headers={"authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 404
        assert not any(p.startswith(BASE) for p in (await http.get("/openapi.json")).json()["paths"])


# ------------------------------------------------------------------ bodies

BAD_USER_BODIES = {
    "malformed JSON": (b'{"schemas": [', 400, "invalidSyntax"),
    "not UTF-8": (f'{{"schemas":["{USER_SCHEMA}"],"userName":"\xe9"}}'.encode("latin-1"), 400, "invalidSyntax"),
    "a JSON array": (b"[]", 400, "invalidSyntax"),
    "a JSON string": (b'"user"', 400, "invalidSyntax"),
    "NaN": (json.dumps({**okta_user("eve@example.com", "eve"), "x": 1}).replace("1}", "NaN}").encode(),
            400, "invalidSyntax"),
    "deeply nested": (b'{"a":' * 5000 + b"1" + b"}" * 5000, 400, "invalidSyntax"),
    "no schemas": ({k: v for k, v in okta_user("eve@example.com", "eve").items() if k != "schemas"},
                   400, "invalidSyntax"),
    "wrong schemas": (okta_user("eve@example.com", "eve", schemas=[GROUP_SCHEMA]), 400, "invalidSyntax"),
    "unknown attribute": (okta_user("eve@example.com", "eve", favouriteColour="blue"), 400, "invalidSyntax"),
    "unknown extension": (okta_user("eve@example.com", "eve", schemas=[USER_SCHEMA, "urn:example:ext"],
                                    **{"urn:example:ext": {"x": 1}}), 400, "invalidSyntax"),
    "no userName": ({k: v for k, v in okta_user("eve@example.com", "eve").items() if k != "userName"},
                    400, "invalidValue"),
    "blank userName": (okta_user("  ", "eve"), 400, "invalidValue"),
    "userName not a string": (okta_user("eve@example.com", "eve", userName=42), 400, "invalidValue"),
    "userName too long": (okta_user("e" * 321, "eve"), 400, "invalidValue"),
    "no externalId": ({k: v for k, v in okta_user("eve@example.com", "eve").items() if k != "externalId"},
                      400, "invalidValue"),
    "externalId too long": (okta_user("eve@example.com", "e" * 256), 400, "invalidValue"),
    "active not a boolean": (okta_user("eve@example.com", "eve", active="maybe"), 400, "invalidValue"),
    "bad email": (okta_user("eve@example.com", "eve", emails=[{"value": "not-an-address"}]), 400, "invalidValue"),
    "emails not a list": (okta_user("eve@example.com", "eve", emails="eve@example.com"), 400, "invalidValue"),
    "name not an object": (okta_user("eve@example.com", "eve", name="Eve"), 400, "invalidValue"),
    "NUL in a string": (okta_user("eve\x00@example.com", "eve"), 400, "invalidValue"),
    "lone surrogate": (json.dumps(okta_user("eve@example.com", "eve")).replace("eve@", "eve\\ud800@").encode(),
                       400, "invalidValue"),
    "userName taken (any case)": (okta_user("ALICE@example.com", "eve"), 409, "uniqueness"),
    "externalId taken": (okta_user("eve@example.com", "alice"), 409, "uniqueness"),
}


@pytest.mark.parametrize("case", BAD_USER_BODIES, ids=list(BAD_USER_BODIES))
async def test_bad_user_bodies(client, state, seeded, case) -> None:
    body, status, scim_type = BAD_USER_BODIES[case]
    before = state_of(state)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert_scim_error(await Scim(client).send("POST", "/Users", raw=raw), status, scim_type)
    assert state_of(state) == before
    [rejected] = audit_events(state, "scim.request.rejected")
    assert rejected.data == {"method": "POST", "path": "/scim/v2/Users", "status": status, "scim_type": scim_type}


async def test_other_media_types_are_415(client, state, seeded) -> None:
    before = state_of(state)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        response = await Scim(client, content_type=content_type).post("/Users", okta_user("eve@example.com", "eve"))
        assert_scim_error(response, 415)
    assert state_of(state) == before
    ok = await Scim(client, content_type="application/json; charset=utf-8").post("/Users", okta_user("e@x.io", "e"))
    assert ok.status_code == 201


async def test_too_large_bodies_are_refused_before_reading(client, state, seeded) -> None:
    before = state_of(state)
    huge = okta_user("eve@example.com", "eve", displayName="x" * 70_000)
    assert (await Scim(client).post("/Users", huge)).status_code == 413
    assert state_of(state) == before


BAD_PATCHES = {
    "no Operations": ({"schemas": [PATCH_SCHEMA]}, 400, "invalidValue"),
    "no schemas": ({"Operations": [{"op": "replace", "value": {"active": False}}]}, 400, "invalidSyntax"),
    "user schema": ({"schemas": [USER_SCHEMA], "Operations": [{"op": "replace", "value": {"active": False}}]},
                    400, "invalidSyntax"),
    "empty Operations": ({"schemas": [PATCH_SCHEMA], "Operations": []}, 400, "invalidValue"),
    "Operations not a list": ({"schemas": [PATCH_SCHEMA], "Operations": {"op": "replace"}}, 400, "invalidValue"),
    "unknown op": ([{"op": "merge", "path": "active", "value": False}], 400, "invalidValue"),
    "unknown member of an operation": ([{"op": "replace", "path": "active", "value": False, "why": 1}],
                                       400, "invalidSyntax"),
    "unknown path": ([{"op": "replace", "path": "favouriteColour", "value": "blue"}], 400, "invalidPath"),
    "malformed path": ([{"op": "replace", "path": 'emails[type eq "work"', "value": "x"}], 400, "invalidPath"),
    "unknown key in the value": ([{"op": "replace", "value": {"active": False, "colour": "blue"}}],
                                 400, "invalidValue"),
    "active not a boolean": ([{"op": "Replace", "path": "active", "value": "Nope"}], 400, "invalidValue"),
    "id changed": ([{"op": "replace", "value": {"id": "00000000-0000-0000-0000-000000000000"}}], 400, "mutability"),
    "id targeted": ([{"op": "replace", "path": "id", "value": "x"}], 400, "mutability"),
    "userName removed": ([{"op": "remove", "path": "userName"}], 400, "mutability"),
    "externalId changed": ([{"op": "replace", "path": "externalId", "value": "mallory"}], 400, "mutability"),
    "remove without a path": ([{"op": "remove"}], 400, "noTarget"),
    "filter that describes no entry": ([{"op": "replace", "path": 'emails[type ne "work"].value', "value": "a@b.co"}],
                                       400, "noTarget"),
    "userName of another user": ([{"op": "replace", "path": "userName", "value": "Bob@Example.com"}],
                                 409, "uniqueness"),
    "deactivate, then a bad operation": ([{"op": "replace", "value": {"active": False}},
                                          {"op": "replace", "path": "nickName", "value": 5}], 400, "invalidValue"),
}


@pytest.mark.parametrize("case", BAD_PATCHES, ids=list(BAD_PATCHES))
async def test_bad_user_patches(client, state, seeded, case) -> None:
    body, status, scim_type = BAD_PATCHES[case]
    payload = body if isinstance(body, dict) else {"schemas": [PATCH_SCHEMA], "Operations": body}
    before = state_of(state)
    response = await Scim(client).send("PATCH", f"/Users/{seeded['alice']}", payload)
    assert_scim_error(response, status, scim_type)
    assert state_of(state) == before  # alice is not offboarded by the first operation of a refused patch


@pytest.mark.parametrize("case", ["externalId changed", "no userName", "unknown attribute", "active not a boolean"])
async def test_bad_user_replacements(client, state, seeded, case) -> None:
    body = okta_user(id=seeded["alice"], active=False)
    if case == "externalId changed":
        body["externalId"], expected = "mallory", ("mutability",)
    elif case == "no userName":
        del body["userName"]
        expected = ("invalidValue",)
    elif case == "unknown attribute":
        body["colour"], expected = "blue", ("invalidSyntax",)
    else:
        body["active"], expected = "perhaps", ("invalidValue",)
    before = state_of(state)
    assert_scim_error(await Scim(client).put(f"/Users/{seeded['alice']}", body), 400, *expected)
    assert state_of(state) == before


BAD_GROUP_CHANGES = {
    "unknown member": ("POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "New",
                                           "members": [{"value": "00000000-0000-0000-0000-000000000000"}]},
                       400, "invalidValue"),
    "nested group": ("POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "New",
                                         "members": [{"value": "{group}", "type": "Group"}]}, 400, "invalidValue"),
    "member without value": ("POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "New",
                                                 "members": [{"display": "x"}]}, 400, "invalidValue"),
    "no displayName": ("POST", "/Groups", {"schemas": [GROUP_SCHEMA]}, 400, "invalidValue"),
    "displayName taken": ("POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Platform"},
                          409, "uniqueness"),
    "user schema": ("POST", "/Groups", {"schemas": [USER_SCHEMA], "displayName": "New"}, 400, "invalidSyntax"),
    "add an unknown member": ("PATCH", "/Groups/{group}", [{"op": "add", "path": "members",
                                                             "value": [{"value": "{bob}"}, {"value": "ghost"}]}],
                              400, "invalidValue"),
    "members not a list of objects": ("PATCH", "/Groups/{group}", [{"op": "add", "path": "members",
                                                                     "value": "{bob}"}], 400, "invalidValue"),
    "remove displayName": ("PATCH", "/Groups/{group}", [{"op": "remove", "path": "displayName"}], 400, "mutability"),
    "bad member filter": ("PATCH", "/Groups/{group}", [{"op": "remove", "path": "members[value eq ]"}],
                          400, "invalidPath"),
    "replace with an unknown member": ("PUT", "/Groups/{group}", {"schemas": [GROUP_SCHEMA], "displayName": "P",
                                                                  "members": [{"value": "ghost"}]},
                                       400, "invalidValue"),
}


@pytest.mark.parametrize("case", BAD_GROUP_CHANGES, ids=list(BAD_GROUP_CHANGES))
async def test_bad_group_changes(client, state, seeded, case) -> None:
    method, path, body, status, scim_type = BAD_GROUP_CHANGES[case]
    text = json.dumps(body if isinstance(body, dict) else {"schemas": [PATCH_SCHEMA], "Operations": body})
    for name, value in seeded.items():
        text, path = text.replace(f"{{{name}}}", value), path.replace(f"{{{name}}}", value)
    before = state_of(state)
    assert_scim_error(await Scim(client).send(method, path, raw=text.encode()), status, scim_type)
    assert state_of(state) == before


# ------------------------------------------------------------------ queries, ids, endpoints

BAD_QUERIES = {
    "filter syntax": ({"filter": "userName eq"}, "invalidFilter"),
    "filter on an unknown attribute": ({"filter": 'colour eq "blue"'}, "invalidFilter"),
    "unsupported operator": ({"filter": 'userName co "ali"'}, "invalidFilter"),
    "unsupported or": ({"filter": 'userName eq "a" or userName eq "b"'}, "invalidFilter"),
    "unsupported attribute": ({"filter": "active eq true"}, "invalidFilter"),
    "unsupported not": ({"filter": 'not (userName eq "a")'}, "invalidFilter"),
    "value of the wrong type": ({"filter": "userName eq 5"}, "invalidFilter"),
    "count not a number": ({"count": "ten"}, "invalidValue"),
    "count too large": ({"count": "99999999999999999999"}, "invalidValue"),
    "startIndex too large": ({"startIndex": str(2**40)}, "invalidValue"),
    "startIndex not a number": ({"startIndex": "1.5"}, "invalidValue"),
    "NUL in the filter": ({"filter": 'userName eq "a\x00"'}, "invalidValue"),
    "filter twice": ([("filter", 'userName eq "a"'), ("filter", 'userName eq "b"')], "invalidValue"),
}


@pytest.mark.parametrize("case", BAD_QUERIES, ids=list(BAD_QUERIES))
async def test_bad_queries(client, state, seeded, case) -> None:
    params, scim_type = BAD_QUERIES[case]
    scim = Scim(client)
    response = await client.get(f"{BASE}/Users", params=params, headers=scim.headers())
    assert_scim_error(response, 400, scim_type)
    assert not audit_events(state, "scim.request.rejected")  # reads are not audited


async def test_negative_counts_and_indexes_are_read_as_rfc_7644_says(client, seeded) -> None:
    page = (await Scim(client).get("/Users", startIndex=-4, count=-1)).json()
    assert page["startIndex"] == 1 and page["itemsPerPage"] == 0 and page["totalResults"] == 2


@pytest.mark.parametrize("resource_id", ["00000000-0000-0000-0000-000000000000", "x" * 500, "é", "%00", "a b",
                                         "..%2FGroups"])
async def test_unknown_resources_are_404(client, state, seeded, resource_id) -> None:
    scim, before = Scim(client), state_of(state)
    for method, kind in (("GET", "Users"), ("PATCH", "Users"), ("PUT", "Users"), ("DELETE", "Users"),
                         ("GET", "Groups"), ("PATCH", "Groups"), ("DELETE", "Groups")):
        body = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": {"active": False}}]} \
            if method == "PATCH" and kind == "Users" else \
            {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "remove", "path": "members"}]} if method == "PATCH" else \
            okta_user() if method == "PUT" else None
        response = await scim.send(method, f"/{kind}/{resource_id}", body)
        assert response.status_code in (404, 405), (method, kind, response.text)
        assert_scim_error(response, response.status_code)
    assert state_of(state) == before


async def test_a_group_id_is_not_a_user_id(client, seeded) -> None:
    assert_scim_error(await Scim(client).get(f"/Users/{seeded['group']}"), 404)
    assert_scim_error(await Scim(client).get(f"/Groups/{seeded['alice']}"), 404)


async def test_unknown_endpoints_and_methods(client) -> None:
    scim = Scim(client)
    assert_scim_error(await scim.get("/Printers"), 404)
    assert_scim_error(await scim.post("/Bulk", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"]}),
                      501)
    assert_scim_error(await scim.get("/Me"), 501)
    assert_scim_error(await scim.post("/Users/.search", {}), 501)
    assert_scim_error(await scim.delete("/ServiceProviderConfig"), 405)
    assert_scim_error(await scim.send("PATCH", "/Users", {}), 405)
    assert_scim_error(await scim.get("/Schemas", filter='id eq "x"'), 400, "invalidValue")


async def test_another_idps_token_cannot_change_this_idps_resources(client, state, seeded) -> None:
    corp, before = Scim(client, CORP_TOKEN), state_of(state)
    assert_scim_error(await corp.delete(f"/Users/{seeded['alice']}"), 404)
    assert_scim_error(await corp.put(f"/Users/{seeded['alice']}", okta_user(active=False)), 404)
    assert_scim_error(await corp.patch(f"/Groups/{seeded['group']}", {"op": "remove", "path": "members"}), 404)
    assert_scim_error(await corp.delete(f"/Groups/{seeded['group']}"), 404)
    assert state_of(state) == before


async def test_random_mutations_of_real_requests_never_fail_the_server(client, state, seeded) -> None:
    """Seeded fuzzing of Okta/Entra bodies: every answer is a success or a SCIM 4xx, never a 500."""
    rng = random.Random(7)
    scim = Scim(client)
    junk = [None, True, 0, -1, 1.5, "", "x" * 300, [], {}, [{}], {"value": None}, "False", "\u202e", ["a", 1]]
    paths = [None, "active", "userName", "name.givenName", 'emails[type eq "work"].value', "members",
             f'members[value eq "{seeded["bob"]}"]', "displayName", f"{ENTERPRISE}:department", "meta", "schemas"]
    for round_ in range(150):
        kind = rng.choice(["user", "entra", "put-user", "patch-user", "patch-group", "group"])
        if kind in ("user", "entra"):
            body = (okta_user if kind == "user" else entra_user)(f"fuzz{round_}@example.com", f"fuzz{round_}")
            body[rng.choice(list(body))] = rng.choice(junk)
            response = await scim.post("/Users", body)
        elif kind == "put-user":
            body = okta_user("bob@example.com", "bob", id=seeded["bob"])
            body[rng.choice(list(body))] = rng.choice(junk)
            response = await scim.put(f"/Users/{seeded['bob']}", body)
        elif kind == "group":
            body = {"schemas": [GROUP_SCHEMA], "displayName": f"G{round_}", "members": [{"value": seeded["bob"]}]}
            body[rng.choice(list(body))] = rng.choice(junk)
            response = await scim.post("/Groups", body)
        else:
            operation = {"op": rng.choice(["add", "Replace", "remove", "copy"]), "path": rng.choice(paths),
                         "value": rng.choice(junk)}
            operation = {k: v for k, v in operation.items() if v is not None or rng.random() < 0.3}
            target = f"/Users/{seeded['bob']}" if kind == "patch-user" else f"/Groups/{seeded['group']}"
            response = await scim.patch(target, operation)
        assert response.status_code < 500, (kind, response.text)
        if response.status_code >= 400:
            assert_scim_error(response, response.status_code, response.json().get("scimType"))
