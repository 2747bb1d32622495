"""The admin API (/admin/api/v1): scope boundaries, the write operations and their audit events, policy
import, and a complete OpenAPI document. Every operation goes through the service functions the CLI uses."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from sqlalchemy import select

from broker.dev import DEV_POLICY
from broker.registry import admin as registry_admin
from broker.storage import users
from broker.storage.models import AuditEvent, Client, McpServer, PolicyVersion, User, utcnow
from tests.support.oauth_flow import authorize, exchange, pkce, register_client, tokens_for

API = "/admin/api/v1"
READ_ONLY = DEV_POLICY.replace('scopes = "*"', 'scopes = ["tools:read"]')
NEW_SERVER = {"id": "crm", "name": "CRM", "resource": "https://crm.example.com/mcp",
              "scopes": {"crm:read": "Read records", "crm:write": "Change records"}, "default_scopes": ["crm:read"]}


async def bearer(client: httpx.AsyncClient, state, *scopes: str, trusted: bool = False,
                 may_introspect: bool = False) -> tuple[dict[str, str], str]:
    """Authorization headers for a fresh client-credentials client holding ``scopes``, and its id."""
    robot = register_client(state, name="Automation", auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",), scopes=scopes, trusted=trusted,
                            may_introspect=may_introspect)
    response = await client.post("/token", data={"grant_type": "client_credentials",
                                                  "resource": f"{state.settings.issuer}/admin/api"},
                                 auth=(robot.row.id, robot.secret))
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}"}, robot.row.id


def events(state, event_type: str) -> list[AuditEvent]:
    with state.database.sessions() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.event_type == event_type)
                                    .order_by(AuditEvent.id)))


async def test_scope_boundaries(client: httpx.AsyncClient, state) -> None:
    reader, _ = await bearer(client, state, "admin:read")
    writer, _ = await bearer(client, state, "admin:write")
    assert (await client.get(f"{API}/servers", headers=reader)).status_code == 200
    refused = await client.post(f"{API}/servers", json=NEW_SERVER, headers=reader)
    assert refused.status_code == 403 and 'scope="admin:write"' in refused.headers["www-authenticate"]
    for path in ("/users/alice@example.com/revoke", "/users/alice@example.com/restore"):
        response = await client.post(API + path, json={"reason": "x"}, headers=writer)
        assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"
    assert (await client.post(f"{API}/keys/rotate", headers=reader)).status_code == 403
    assert (await client.post(f"{API}/policy", json={"document": READ_ONLY}, headers=reader)).status_code == 403
    anonymous = await client.get(f"{API}/servers")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer ")
    with state.database.sessions() as session:
        assert session.get(McpServer, "crm") is None


async def test_servers(client: httpx.AsyncClient, state) -> None:
    auth, robot = await bearer(client, state, "admin:read", "admin:write")
    created = await client.post(f"{API}/servers", json=NEW_SERVER, headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["enabled"] is True and created.json()["resource"] == "https://crm.example.com/mcp"
    duplicate = await client.post(f"{API}/servers", json=NEW_SERVER, headers=auth)
    assert duplicate.status_code == 409 and duplicate.json()["error"] == "conflict"
    same_resource = await client.post(f"{API}/servers", json={**NEW_SERVER, "id": "crm2"}, headers=auth)
    assert same_resource.status_code == 409
    invalid = await client.post(f"{API}/servers", json={**NEW_SERVER, "id": "Bad Id", "scopes": {},
                                                        "default_scopes": []}, headers=auth)
    assert invalid.status_code == 400 and invalid.json()["error"] == "invalid_request"
    assert {p.split(":")[0] for p in invalid.json()["problems"]} == {"id", "scopes"}
    missing = await client.post(f"{API}/servers", json={"id": "x"}, headers=auth)
    assert missing.status_code == 400 and "scopes" in missing.json()["error_description"]
    changed = await client.patch(f"{API}/servers/crm", json={"name": "Sales CRM"}, headers=auth)
    assert changed.status_code == 200 and changed.json()["name"] == "Sales CRM"
    assert changed.json()["scopes"] == NEW_SERVER["scopes"]
    bad_change = await client.patch(f"{API}/servers/crm", json={"default_scopes": ["nope"]}, headers=auth)
    assert bad_change.status_code == 400
    kept = await client.patch(f"{API}/servers/crm", json={"scopes": None, "name": None}, headers=auth)
    assert kept.status_code == 200 and kept.json()["scopes"] == NEW_SERVER["scopes"]
    assert (await client.patch(f"{API}/servers/crm", json={"enabled": False}, headers=auth)).status_code == 400
    assert (await client.post(f"{API}/servers/crm/disable", headers=auth)).json()["enabled"] is False
    shown = await client.get(f"{API}/servers/crm", headers=auth)
    assert shown.json()["enabled"] is False and shown.json()["name"] == "Sales CRM"
    assert (await client.post(f"{API}/servers/crm/enable", headers=auth)).json()["enabled"] is True
    assert (await client.get(f"{API}/servers/ghost", headers=auth)).status_code == 404
    assert (await client.patch(f"{API}/servers/ghost", json={"name": "x"}, headers=auth)).status_code == 404
    for event_type in ("server.added", "server.updated", "server.disabled", "server.enabled"):
        changes = [e for e in events(state, event_type) if e.server_id == "crm"]
        assert changes and {e.actor for e in changes} == {f"client:{robot}"}
    assert len([e for e in events(state, "server.updated") if e.server_id == "crm"]) == 2  # refused: none
    updated = events(state, "server.updated")[0]
    assert updated.data["before"]["name"] == "CRM" and updated.data["after"]["name"] == "Sales CRM"
    listed = await client.get(f"{API}/servers", headers=auth)
    assert {s["id"] for s in listed.json()} == {"demo", "crm"}


async def test_clients(client: httpx.AsyncClient, state) -> None:
    auth, robot = await bearer(client, state, "admin:read", "admin:write", trusted=True)
    created = await client.post(f"{API}/clients", json={"name": "SIEM", "confidential": True,
                                                         "client_credentials": True, "scopes": ["admin:read"]},
                                headers=auth)
    assert created.status_code == 201, created.text
    siem = created.json()
    assert siem["client_secret"] and siem["grant_types"] == ["client_credentials"]
    token = await client.post("/token", data={"grant_type": "client_credentials",
                                              "resource": f"{state.settings.issuer}/admin/api"},
                              auth=(siem["client_id"], siem["client_secret"]))
    assert token.status_code == 200
    shown = await client.get(f"{API}/clients/{siem['client_id']}", headers=auth)
    assert shown.status_code == 200 and "client_secret" not in shown.json()
    public_cc = await client.post(f"{API}/clients", json={"name": "x", "client_credentials": True}, headers=auth)
    assert public_cc.status_code == 400
    taken = await client.post(f"{API}/clients", json={"name": "again", "client_id": siem["client_id"],
                                                      "redirect_uris": ["http://127.0.0.1/cb"]}, headers=auth)
    assert taken.status_code == 409
    trusted = await client.put(f"{API}/clients/{siem['client_id']}/trusted", json={"trusted": True}, headers=auth)
    assert trusted.json()["trusted"] is True
    assert (await client.put(f"{API}/clients/{siem['client_id']}/trusted", json={}, headers=auth)).status_code == 400
    assert (await client.post(f"{API}/clients/{siem['client_id']}/approve", headers=auth)).status_code == 409
    disabled = await client.post(f"{API}/clients/{siem['client_id']}/disable", headers=auth)
    assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"
    assert (await client.post(f"{API}/clients/{siem['client_id']}/disable", headers=auth)).status_code == 409
    assert (await client.post(f"{API}/clients/ghost/disable", headers=auth)).status_code == 404
    listed = (await client.get(f"{API}/clients?status=disabled", headers=auth)).json()
    assert [c["client_id"] for c in listed["clients"]] == [siem["client_id"]]
    for event_type in ("client.trust_changed", "client.disabled"):
        [event] = events(state, event_type)
        assert event.actor == f"client:{robot}" and event.client_id == siem["client_id"]
    assert [e.actor for e in events(state, "client.registered")][-1] == f"client:{robot}"


def client_count(state) -> int:
    with state.database.sessions() as session:
        return len(list(session.scalars(select(Client))))


BEYOND_WRITE = {  # what a client holding only admin:write asks to hand out
    "security:revoke": {"scopes": ["security:revoke"]},
    "admin:read": {"scopes": ["admin:read"]},
    "a security scope the API does not define yet": {"scopes": ["security:audit"]},
    "an admin scope the API does not define yet": {"scopes": ["admin:keys"]},
    "introspection": {"introspect": True},
    "trusted": {"trusted": True, "redirect_uris": ["http://127.0.0.1:9999/cb"]},
    "ID-JAG redemption": {"id_jag": True},
    "token exchange": {"token_exchange": True},
}


@pytest.mark.parametrize("wanted", BEYOND_WRITE.values(), ids=BEYOND_WRITE.keys())
async def test_a_caller_cannot_create_a_client_beyond_what_it_holds(client: httpx.AsyncClient, state,
                                                                     wanted: dict) -> None:
    writer, _ = await bearer(client, state, "admin:write")
    before = client_count(state)
    body = {"name": "Escalation", "confidential": True, "client_credentials": True, **wanted}
    refused = await client.post(f"{API}/clients", json=body, headers=writer)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "access_denied" and refused.json()["missing"]
    assert client_count(state) == before


async def test_admin_write_alone_never_reaches_the_users_api(client: httpx.AsyncClient, state) -> None:
    """The reported path: mint a client with security:revoke and admin:read, then read the users."""
    writer, _ = await bearer(client, state, "admin:write")
    minted = await client.post(f"{API}/clients", json={"name": "Minted", "confidential": True,
                                                        "client_credentials": True,
                                                        "scopes": ["admin:read", "security:revoke"]}, headers=writer)
    assert minted.status_code == 403
    assert (await client.get(f"{API}/users", headers=writer)).status_code == 403


async def test_a_caller_can_hand_out_what_it_holds(client: httpx.AsyncClient, state) -> None:
    holder, _ = await bearer(client, state, "admin:write", "admin:read", "security:revoke", trusted=True,
                             may_introspect=True)
    body = {"name": "SOAR", "confidential": True, "client_credentials": True, "introspect": True, "trusted": True,
            "scopes": ["admin:read", "security:revoke", "tools:read"]}
    created = await client.post(f"{API}/clients", json=body, headers=holder)
    assert created.status_code == 201, created.text
    assert created.json()["may_introspect"] and created.json()["trusted"]
    partial, _ = await bearer(client, state, "admin:write", "admin:read")
    reader_client = await client.post(f"{API}/clients", json={"name": "SIEM", "confidential": True,
                                                               "client_credentials": True, "scopes": ["admin:read"]},
                                      headers=partial)
    assert reader_client.status_code == 201  # MCP scopes and the caller's own admin scopes are fine
    user_client = await client.post(f"{API}/clients", json={"name": "IDE", "redirect_uris": ["http://127.0.0.1/cb"],
                                                            "scopes": ["tools:read"]}, headers=partial)
    assert user_client.status_code == 201  # users still consent to it, and policy decides


async def test_a_caller_cannot_widen_an_existing_client(client: httpx.AsyncClient, state) -> None:
    writer, _ = await bearer(client, state, "admin:write")
    target = register_client(state, name="IDE")
    refused = await client.put(f"{API}/clients/{target.row.id}/trusted", json={"trusted": True}, headers=writer)
    assert refused.status_code == 403 and refused.json()["missing"] == ["trusted"]
    assert (await client.put(f"{API}/clients/{target.row.id}/trusted", json={"trusted": False},
                             headers=writer)).status_code == 200  # narrowing needs nothing
    pending = register_client(state, name="Pending DCR", kind="dcr")
    with state.database.transaction() as session:
        row = session.get(Client, pending.row.id)
        row.status, row.trusted = "pending", True
    refused = await client.post(f"{API}/clients/{pending.row.id}/approve", headers=writer)
    assert refused.status_code == 403 and refused.json()["missing"] == ["trusted"]
    with state.database.sessions() as session:
        assert session.get(Client, pending.row.id).status == "pending"
        assert not session.get(Client, target.row.id).trusted


async def test_no_mcp_server_takes_the_audience_of_the_brokers_own_apis(client: httpx.AsyncClient, state) -> None:
    """admin:write registering an MCP server at the admin API's resource, with admin scopes, and a policy rule
    for it, would hand users admin API tokens: registration refuses it, and a server stored there anyway (an
    older database) is never a token audience."""
    writer, _ = await bearer(client, state, "admin:write")
    issuer = state.settings.issuer
    squat = {"id": "squat", "name": "Squat", "resource": f"{issuer}/admin/api",
             "scopes": {"admin:read": "Read", "security:revoke": "Revoke"}}
    for resource in (f"{issuer}/admin/api", f"{issuer}/admin/api/", f"{issuer}/userinfo"):
        refused = await client.post(f"{API}/servers", json={**squat, "resource": resource}, headers=writer)
        assert refused.status_code == 400 and "the broker's own" in refused.json()["error_description"]
    moved = await client.patch(f"{API}/servers/demo", json={"resource": f"{issuer}/admin/api"}, headers=writer)
    assert moved.status_code == 400
    with state.database.transaction() as session:
        assert session.get(McpServer, "squat") is None
        registry_admin.add(session, registry_admin.ServerSpec(**squat))  # no issuer: as registered before the check
    everyone = ('\n[[rules]]\nid = "squat"\neffect = "allow"\nscopes = "*"\n[rules.subjects]\neveryone = true\n'
                '[rules.targets]\nservers = ["squat"]\n')
    assert (await client.post(f"{API}/policy", json={"document": DEV_POLICY + everyone},
                              headers=writer)).status_code == 200
    app = register_client(state, trusted=True)
    verifier, challenge = pkce()
    redirect = await authorize(client, app.row.id, challenge, resource=f"{issuer}/admin/api", scope="admin:read")
    assert redirect.get("error") == "invalid_target" and "code" not in redirect
    code = (await authorize(client, app.row.id, challenge))["code"]
    token = await exchange(client, app.row.id, code, verifier, resource=f"{issuer}/admin/api")
    assert token.status_code == 400 and token.json()["error"] in ("invalid_target", "invalid_grant")


async def test_a_preregistered_client_id_is_never_a_metadata_document_url(client: httpx.AsyncClient, state) -> None:
    writer, _ = await bearer(client, state, "admin:write")
    squatted = await client.post(f"{API}/clients", json={"name": "Claude", "client_id": "https://claude.ai/oauth.json",
                                                          "redirect_uris": ["http://127.0.0.1/cb"]}, headers=writer)
    assert squatted.status_code == 400 and "metadata document" in squatted.json()["error_description"]


async def test_policy_import_dry_run_apply_invalid_rollback(client: httpx.AsyncClient, state) -> None:
    await tokens_for(client, register_client(state, trusted=True).row.id)  # alice exists
    auth, robot = await bearer(client, state, "admin:read", "admin:write")
    current = (await client.get(f"{API}/policy", headers=auth)).json()
    assert current["version"] == 1 and "[[rules]]" in current["document"]
    dry = await client.post(f"{API}/policy", json={"document": READ_ONLY, "dry_run": True}, headers=auth)
    assert dry.status_code == 200, dry.text
    body = dry.json()
    assert body["version"] is None and body["dry_run"] is True and body["rule_changes"][0]["kind"] == "changed"
    [change] = body["access_changes"]
    assert change["email"] == "alice@example.com" and change["after_scopes"] == ["tools:read"]
    assert (await client.get(f"{API}/policy", headers=auth)).json()["version"] == 1
    invalid = await client.post(f"{API}/policy", json={"document": READ_ONLY + '\n[[rules]]\nid = "x"\n'
                                                                  'effect = "maybe"\n'}, headers=auth)
    assert invalid.status_code == 400 and invalid.json()["error"] == "invalid_request"
    assert invalid.json()["problems"] and all("message" in p for p in invalid.json()["problems"])
    assert any(p["line"] for p in invalid.json()["problems"])
    broken = await client.post(f"{API}/policy", json={"document": "[[rules]\n"}, headers=auth)
    assert broken.status_code == 400
    applied = await client.post(f"{API}/policy", json={"document": READ_ONLY, "comment": "read only"}, headers=auth)
    assert applied.json()["version"] == 2
    [event] = events(state, "policy.changed")
    assert event.actor == f"client:{robot}" and event.data["after_version"] == 2
    explained = await client.post(f"{API}/policy/explain", json={"user": "alice@example.com", "server": "demo"},
                                  headers=auth)
    assert explained.json()["allowed"] is True and explained.json()["scopes"] == ["tools:read"]
    assert (await client.post(f"{API}/policy/explain", json={"user": "ghost", "server": "demo"},
                              headers=auth)).status_code == 404
    who = (await client.get(f"{API}/policy/who-can?server=demo", headers=auth)).json()
    assert who["users"] == [{"user_id": who["users"][0]["user_id"], "email": "alice@example.com",
                             "scopes": ["tools:read"]}]
    assert (await client.get(f"{API}/policy/who-can?server=ghost", headers=auth)).status_code == 404
    rolled = await client.post(f"{API}/policy/rollback", json={"version": 1}, headers=auth)
    assert rolled.json() == {"version": 3, "restored_version": 1}
    assert (await client.post(f"{API}/policy/rollback", json={"version": 99}, headers=auth)).status_code == 404
    assert [v["version"] for v in (await client.get(f"{API}/policy/versions", headers=auth)).json()] == [3, 2, 1]
    assert events(state, "policy.rolled_back")[0].actor == f"client:{robot}"
    with state.database.sessions() as session:
        assert len(session.scalars(select(PolicyVersion)).all()) == 3


async def test_user_search_takes_percent_and_underscore_literally(client: httpx.AsyncClient, state) -> None:
    with state.database.transaction() as session:
        users.add(session, User(email="ann_lee@example.com", display_name="Ann 100% Lee"),
                  User(email="annxlee@example.com", display_name="Ann"))
    reader, _ = await bearer(client, state, "admin:read")

    async def emails(q: str) -> list[str]:
        found = (await client.get(f"{API}/users", params={"q": q}, headers=reader)).json()
        return [u["email"] for u in found["users"]]

    assert await emails("ann_") == ["ann_lee@example.com"]
    assert await emails("100%") == ["ann_lee@example.com"]
    assert await emails("%") == ["ann_lee@example.com"]
    assert await emails("ANN") == ["ann_lee@example.com", "annxlee@example.com"]


async def test_users_revoke_and_restore(client: httpx.AsyncClient, state) -> None:
    await tokens_for(client, register_client(state, trusted=True).row.id)
    reader, _ = await bearer(client, state, "admin:read")
    security, robot = await bearer(client, state, "security:revoke")
    found = (await client.get(f"{API}/users?q=alice", headers=reader)).json()
    assert [u["email"] for u in found["users"]] == ["alice@example.com"] and found["has_next"] is False
    alice = (await client.get(f"{API}/users/alice@example.com", headers=reader)).json()
    assert alice["groups"] == ["engineering"] and alice["identities"][0]["idp"] == "test"
    assert alice["status"] == "active" and alice["live_refresh_families"] == 1
    assert (await client.get(f"{API}/users/ghost", headers=reader)).status_code == 404
    assert (await client.post(f"{API}/users/alice@example.com/restore", headers=security)).status_code == 409
    revoked = await client.post(f"{API}/users/alice@example.com/revoke", json={"reason": "left"}, headers=security)
    assert revoked.json()["families_revoked"] == 1
    restored = await client.post(f"{API}/users/alice@example.com/restore", json={"reason": "came back"},
                                 headers=security)
    assert restored.status_code == 200 and restored.json()["status"] == "active"
    [event] = events(state, "user.restored")
    assert event.actor == f"client:{robot}" and event.data["reason"] == "came back"


async def test_audit_and_keys(client: httpx.AsyncClient, state) -> None:
    auth, robot = await bearer(client, state, "admin:read", "admin:write")
    before = (await client.get(f"{API}/keys", headers=auth)).json()
    assert [k["state"] for k in before if k["purpose"] == "broker"] == ["signing"]
    started = utcnow().replace(microsecond=0)
    rotated = await client.post(f"{API}/keys/rotate", json={"now": False}, headers=auth)
    assert rotated.status_code == 201 and rotated.json()["state"] == "pending"
    delay = dt.timedelta(seconds=state.settings.keys.activation_delay)
    assert started + delay <= dt.datetime.fromisoformat(rotated.json()["activates_at"]) <= utcnow() + delay
    after = (await client.get(f"{API}/keys", headers=auth)).json()
    assert [k["state"] for k in after if k["purpose"] == "broker"] == ["signing", "pending"]
    page = (await client.get(f"{API}/audit?event_type=key.rotated", headers=auth)).json()
    assert [e["actor"] for e in page["events"]] == [f"client:{robot}"] and page["next_before"] is None
    everything = (await client.get(f"{API}/audit", headers=auth)).json()["events"]
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    window = await client.get(f"{API}/audit", params={"since": "2000-01-01T00:00:00Z", "client": robot},
                              headers=auth)
    assert window.status_code == 200 and {e["client_id"] for e in window.json()["events"]} <= {robot}
    assert (await client.get(f"{API}/audit?since=yesterday", headers=auth)).status_code == 400
    assert (await client.get(f"{API}/audit?before=0", headers=auth)).status_code == 400
    verified = (await client.get(f"{API}/audit/verify", headers=auth)).json()
    assert verified["ok"] is True


NEW_PATHS = {
    ("get", "/servers"), ("post", "/servers"), ("get", "/servers/{server_id}"), ("patch", "/servers/{server_id}"),
    ("post", "/servers/{server_id}/disable"), ("post", "/servers/{server_id}/enable"),
    ("get", "/clients"), ("post", "/clients"), ("get", "/clients/{client_id}"),
    ("post", "/clients/{client_id}/approve"), ("post", "/clients/{client_id}/disable"),
    ("put", "/clients/{client_id}/trusted"),
    ("get", "/users"), ("get", "/users/{user}"), ("post", "/users/{user}/revoke"), ("post", "/users/{user}/restore"),
    ("post", "/users/{user}/sessions/{session_id}/revoke"),
    ("get", "/policy"), ("post", "/policy"), ("get", "/policy/versions"), ("post", "/policy/explain"),
    ("get", "/policy/who-can"), ("post", "/policy/rollback"), ("get", "/access"),
    ("get", "/audit"), ("get", "/audit/verify"), ("get", "/keys"), ("post", "/keys/rotate"),
}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_openapi_lists_every_admin_operation_with_its_errors(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operations = {(method, path.removeprefix(API)): op for path, item in document["paths"].items()
                  if path.startswith(API) for method, op in item.items()}
    assert NEW_PATHS <= set(operations), NEW_PATHS - set(operations)
    for key in NEW_PATHS:
        codes = set(operations[key]["responses"])
        assert {"401", "403"} <= codes, (key, codes)
        if "{" in key[1]:
            assert "404" in codes, key
        if key[0] in ("post", "put", "patch") and operations[key].get("requestBody"):
            assert "400" in codes, key
    assert "409" in operations[("post", "/servers")]["responses"]
