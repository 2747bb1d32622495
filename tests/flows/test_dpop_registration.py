"""DPoP's registration side, on both stores: a client's ``dpop_bound_access_tokens`` (RFC 9449 §5.2) through DCR,
its metadata document, the CLI, the admin API and the console; an MCP server's ``require_dpop`` through the CLI, the
admin API and the console. Bad input is refused and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from broker.storage import clients as repo
from broker.storage import mcp_servers
from broker.storage.models import AuditEvent, Client
from tests.conftest import ISSUER
from tests.flows.test_admin_api import API, bearer
from tests.flows.test_admin_console import carol, csrf_of, settings  # noqa: F401 - the console's fixtures
from tests.support.dpop import DpopKey
from tests.support.metadata_fetcher import FakeMetadataFetcher, state_fetching_with
from tests.support.oauth_flow import CLIENT_REDIRECT, authorize, authorize_params, exchange, pkce, register_client

DOCUMENT_URL = "https://agent.example.com/oauth/client.json"
NOT_BOOLEANS = ["true", 1, 0, None, [], {}]
TOKEN = f"{ISSUER}/token"


@pytest.fixture
def documents() -> FakeMetadataFetcher:
    return FakeMetadataFetcher()


@pytest.fixture
def state(settings: Any, migrated: Any, loopback: Any, documents: FakeMetadataFetcher) -> Iterator[Any]:  # noqa: F811
    with state_fetching_with(settings, loopback, documents) as broker_state:
        yield broker_state


def bound(state: Any, client_id: str) -> bool | None:
    with state.database.sessions() as session:
        row = repo.get(session, client_id)
        return None if row is None else row.dpop_bound_access_tokens


def changes(state: Any) -> int:
    with state.database.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEvent)
                                  .where(AuditEvent.event_type == "client.dpop_changed")) or 0)


def client_count(state: Any) -> int:
    with state.database.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Client)) or 0)


# ---------------------------------------------------------------- dynamic registration (RFC 7591)


async def test_dcr_registers_and_echoes_dpop_bound_access_tokens(client: httpx.AsyncClient, state: Any) -> None:
    response = await client.post("/register", json={"client_name": "Agent", "redirect_uris": [CLIENT_REDIRECT],
                                                    "token_endpoint_auth_method": "none",
                                                    "dpop_bound_access_tokens": True})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["dpop_bound_access_tokens"] is True
    assert bound(state, body["client_id"]) is True


async def test_dcr_without_the_field_registers_false_and_says_so(client: httpx.AsyncClient, state: Any) -> None:
    response = await client.post("/register", json={"client_name": "Agent", "redirect_uris": [CLIENT_REDIRECT],
                                                    "token_endpoint_auth_method": "none"})
    assert response.status_code == 201, response.text
    assert response.json()["dpop_bound_access_tokens"] is False  # RFC 9449 §5.2: the default
    assert bound(state, response.json()["client_id"]) is False


@pytest.mark.parametrize("value", NOT_BOOLEANS, ids=repr)
async def test_dcr_refuses_a_dpop_bound_access_tokens_that_is_not_a_boolean(client: httpx.AsyncClient, state: Any,
                                                                            value: Any) -> None:
    before = client_count(state)
    response = await client.post("/register", json={"client_name": "Agent", "redirect_uris": [CLIENT_REDIRECT],
                                                    "token_endpoint_auth_method": "none",
                                                    "dpop_bound_access_tokens": value})
    assert response.status_code == 400, response.text
    assert response.json() == {"error": "invalid_client_metadata",
                               "error_description": "dpop_bound_access_tokens must be a boolean (true or false)"}
    assert client_count(state) == before


# ---------------------------------------------------------------- Client ID Metadata Documents


def document(**extra: Any) -> dict[str, Any]:
    return {"client_id": DOCUMENT_URL, "client_name": "Doc agent", "redirect_uris": [CLIENT_REDIRECT],
            "token_endpoint_auth_method": "none", **extra}


async def start(client: httpx.AsyncClient) -> httpx.Response:
    _, challenge = pkce()
    return await client.get("/authorize", params=authorize_params(DOCUMENT_URL, challenge))


async def test_a_metadata_document_sets_and_clears_dpop_bound_access_tokens(client: httpx.AsyncClient, state: Any,
                                                                           documents: FakeMetadataFetcher) -> None:
    documents.serve(DOCUMENT_URL, document(dpop_bound_access_tokens=True), cache_control="no-store")
    assert (await start(client)).status_code == 302
    assert bound(state, DOCUMENT_URL) is True
    documents.serve(DOCUMENT_URL, document(), cache_control="no-store")  # omitted: false (RFC 9449 §5.2)
    assert (await start(client)).status_code == 302
    assert bound(state, DOCUMENT_URL) is False
    with state.database.sessions() as session:
        updated = session.scalars(select(AuditEvent).where(AuditEvent.event_type == "client.cimd_updated")).all()
    assert [event.data["fields"] for event in updated] == [["dpop_bound_access_tokens"]]


@pytest.mark.parametrize("value", NOT_BOOLEANS, ids=repr)
async def test_a_metadata_document_with_a_dpop_bound_access_tokens_that_is_not_a_boolean_is_refused(
        client: httpx.AsyncClient, state: Any, documents: FakeMetadataFetcher, value: Any) -> None:
    documents.serve(DOCUMENT_URL, document(dpop_bound_access_tokens=value))
    page = await start(client)
    assert page.status_code == 400 and "dpop_bound_access_tokens must be true or false" in page.text
    token = await client.post("/token", data={"grant_type": "authorization_code", "code": "x",
                                              "client_id": DOCUMENT_URL})
    assert token.status_code in (400, 401) and token.json()["error"] == "invalid_client"
    assert "dpop_bound_access_tokens must be true or false" in token.json()["error_description"]
    assert bound(state, DOCUMENT_URL) is None  # nothing stored


# ---------------------------------------------------------------- the CLI


def test_cli_registers_a_client_for_dpop_bound_tokens_and_turns_it_off_and_on(state: Any, cli: Any,
                                                                             capsys: Any) -> None:
    assert cli(["clients", "add", "--name", "Agent", "--redirect-uri", CLIENT_REDIRECT, "--id", "agent",
                "--dpop-bound-access-tokens", "--json"]) == 0
    assert '"dpop_bound_access_tokens": true' in capsys.readouterr().out
    assert bound(state, "agent") is True
    assert cli(["clients", "dpop", "agent", "off"]) == 0
    assert capsys.readouterr().out == "client agent gets bearer or DPoP-bound access tokens\n"
    assert bound(state, "agent") is False
    assert cli(["clients", "dpop", "agent", "on"]) == 0
    assert bound(state, "agent") is True and changes(state) == 2
    assert cli(["clients", "show", "agent", "--json"]) == 0
    assert '"dpop_bound_access_tokens": true' in capsys.readouterr().out


def test_cli_refuses_dpop_for_an_unknown_or_metadata_document_client_in_one_line(state: Any, cli: Any,
                                                                                 capsys: Any) -> None:
    with state.database.transaction() as session:
        repo.insert_if_absent(session, {"id": DOCUMENT_URL, "name": "Doc", "kind": "cimd", "status": "active"})
    capsys.readouterr()
    assert cli(["clients", "dpop", "nobody", "on"]) == 2
    assert capsys.readouterr().err == "broker: no client 'nobody'\n"
    assert cli(["clients", "dpop", DOCUMENT_URL, "on"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "described by its metadata document" in err
    assert bound(state, DOCUMENT_URL) is False and changes(state) == 0
    with pytest.raises(SystemExit) as exited:
        cli(["clients", "dpop", "nobody", "maybe"])
    assert exited.value.code == 2


# ---------------------------------------------------------------- the admin API


async def test_admin_api_registers_and_changes_dpop_bound_access_tokens(client: httpx.AsyncClient,
                                                                        state: Any) -> None:
    writer, _ = await bearer(client, state, "admin:write", "admin:read")
    created = await client.post(f"{API}/clients", headers=writer, json={
        "name": "Agent", "client_id": "agent", "redirect_uris": [CLIENT_REDIRECT], "dpop_bound_access_tokens": True})
    assert created.status_code == 201, created.text
    assert created.json()["dpop_bound_access_tokens"] is True and bound(state, "agent") is True
    off = await client.put(f"{API}/clients/agent/dpop", headers=writer, json={"dpop_bound_access_tokens": False})
    assert off.status_code == 200 and off.json()["dpop_bound_access_tokens"] is False
    shown = await client.get(f"{API}/clients/agent", headers=writer)
    assert shown.json()["dpop_bound_access_tokens"] is False and bound(state, "agent") is False
    with state.database.sessions() as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.event_type == "client.dpop_changed")).all()
    assert event.data == {"before": {"dpop_bound_access_tokens": True}, "after": {"dpop_bound_access_tokens": False}}


async def test_admin_api_refuses_bad_dpop_changes_and_changes_nothing(client: httpx.AsyncClient,
                                                                      state: Any) -> None:
    writer, _ = await bearer(client, state, "admin:write")
    agent = register_client(state).row.id
    with state.database.transaction() as session:
        repo.insert_if_absent(session, {"id": DOCUMENT_URL, "name": "Doc", "kind": "cimd", "status": "active"})
    for value in ["true", 1, None, "yes"]:
        refused = await client.put(f"{API}/clients/{agent}/dpop", headers=writer,
                                   json={"dpop_bound_access_tokens": value})
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_request", refused.text
        created = await client.post(f"{API}/clients", headers=writer, json={
            "name": "Other", "client_id": "other", "redirect_uris": [CLIENT_REDIRECT],
            "dpop_bound_access_tokens": value})
        assert created.status_code == 400, created.text
    assert (await client.put(f"{API}/clients/{agent}/dpop", headers=writer, json={})).status_code == 400
    missing = await client.put(f"{API}/clients/nobody/dpop", headers=writer, json={"dpop_bound_access_tokens": True})
    assert missing.status_code == 404
    document_client = await client.put(f"{API}/clients/{DOCUMENT_URL}/dpop", headers=writer,
                                       json={"dpop_bound_access_tokens": True})
    assert document_client.status_code == 409 and "metadata document" in document_client.json()["error_description"]
    assert (bound(state, agent), bound(state, DOCUMENT_URL), bound(state, "other")) == (False, False, None)
    assert changes(state) == 0


# ---------------------------------------------------------------- the console


async def test_the_console_registers_shows_and_changes_dpop_bound_clients(carol: httpx.AsyncClient,  # noqa: F811
                                                                          state: Any) -> None:
    token = csrf_of(await carol.get("/admin/clients/new"))
    created = await carol.post("/admin/clients/new", data={
        "csrf_token": token, "name": "Agent", "client_id": "agent", "method_none": "on",
        "redirect_uris": CLIENT_REDIRECT, "dpop_bound_access_tokens": "on"})
    assert created.status_code == 200, created.text
    assert bound(state, "agent") is True
    listed = await carol.get("/admin/clients")
    assert 'title="dpop_bound_access_tokens: a token request without a DPoP proof is refused">required' in listed.text
    off = await carol.post("/admin/clients/action", data={"csrf_token": token, "client_id": "agent",
                                                          "action": "dpop-off"})
    assert off.status_code == 303 and bound(state, "agent") is False
    on = await carol.post("/admin/clients/action", data={"csrf_token": token, "client_id": "agent",
                                                         "action": "dpop-on"})
    assert on.status_code == 303 and bound(state, "agent") is True


async def test_the_console_refuses_dpop_for_a_metadata_document_client(carol: httpx.AsyncClient,  # noqa: F811
                                                                       state: Any) -> None:
    with state.database.transaction() as session:
        repo.insert_if_absent(session, {"id": DOCUMENT_URL, "name": "Doc", "kind": "cimd", "status": "active"})
    token = csrf_of(await carol.get("/admin/clients"))
    refused = await carol.post("/admin/clients/action", data={"csrf_token": token, "client_id": DOCUMENT_URL,
                                                              "action": "dpop-on"})
    assert refused.status_code == 409 and "metadata document" in refused.text
    assert bound(state, DOCUMENT_URL) is False and changes(state) == 0


# ---------------------------------------------------------------- MCP servers: require_dpop

CRM = {"id": "crm", "name": "CRM", "resource": "https://crm.example.com/mcp", "scopes": {"crm:read": "Read"}}


def required(state: Any, server_id: str) -> bool | None:
    with state.database.sessions() as session:
        row = mcp_servers.get(session, server_id)
        return None if row is None else row.require_dpop


def test_cli_requires_dpop_for_a_server_at_registration_and_update(state: Any, cli: Any, capsys: Any) -> None:
    assert cli(["servers", "add", "--id", "crm", "--name", "CRM", "--resource", "https://crm.example.com/mcp",
                "--scopes", "crm:read", "--require-dpop", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["require_dpop"] is True and required(state, "crm") is True
    assert cli(["servers", "update", "crm", "--name", "Sales CRM"]) == 0  # flags not given keep their value
    assert required(state, "crm") is True
    assert cli(["servers", "update", "crm", "--no-require-dpop"]) == 0
    assert required(state, "crm") is False
    assert cli(["servers", "update", "demo", "--require-dpop"]) == 0
    assert required(state, "demo") is True
    capsys.readouterr()
    assert cli(["servers", "show", "demo", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["require_dpop"] is True
    with state.database.sessions() as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.event_type == "server.updated",
                                                           AuditEvent.server_id == "demo")).all()
    assert (event.data["before"]["require_dpop"], event.data["after"]["require_dpop"]) == (False, True)


def test_cli_refuses_require_dpop_for_an_unknown_server_or_with_a_value(state: Any, cli: Any, capsys: Any) -> None:
    capsys.readouterr()
    assert cli(["servers", "update", "ghost", "--require-dpop"]) == 2
    assert capsys.readouterr().err == "broker: no MCP server 'ghost'\n"
    with pytest.raises(SystemExit) as exited:
        cli(["servers", "update", "demo", "--require-dpop=yes"])
    assert exited.value.code == 2
    assert required(state, "demo") is False


async def test_admin_api_registers_and_changes_a_server_requiring_dpop(client: httpx.AsyncClient,
                                                                       state: Any) -> None:
    writer, _ = await bearer(client, state, "admin:write", "admin:read")
    created = await client.post(f"{API}/servers", headers=writer, json={**CRM, "require_dpop": True})
    assert created.status_code == 201 and created.json()["require_dpop"] is True, created.text
    renamed = await client.patch(f"{API}/servers/crm", headers=writer, json={"name": "Sales CRM"})
    assert renamed.json()["require_dpop"] is True  # a field not given keeps its value
    off = await client.patch(f"{API}/servers/crm", headers=writer, json={"require_dpop": False})
    assert off.status_code == 200 and off.json()["require_dpop"] is False and required(state, "crm") is False
    assert (await client.get(f"{API}/servers/demo", headers=writer)).json()["require_dpop"] is False


async def test_admin_api_refuses_a_require_dpop_that_is_not_a_boolean(client: httpx.AsyncClient, state: Any) -> None:
    writer, _ = await bearer(client, state, "admin:write")
    for value in ["true", 1, "yes", [], {}]:
        patched = await client.patch(f"{API}/servers/demo", headers=writer, json={"require_dpop": value})
        assert patched.status_code == 400 and patched.json()["error"] == "invalid_request", patched.text
        created = await client.post(f"{API}/servers", headers=writer, json={**CRM, "require_dpop": value})
        assert created.status_code == 400, created.text
    assert required(state, "demo") is False and required(state, "crm") is None


async def test_the_console_registers_shows_and_changes_a_server_requiring_dpop(
        carol: httpx.AsyncClient, state: Any) -> None:  # noqa: F811
    token = csrf_of(await carol.get("/admin/servers/new"))
    form = {"csrf_token": token, "id": "crm", "name": "CRM", "resource": CRM["resource"], "scopes": "crm:read Read",
            "require_dpop": "on"}
    assert (await carol.post("/admin/servers/new", data=form)).status_code == 303
    assert required(state, "crm") is True
    page = await carol.get("/admin/servers/crm")
    assert 'id="require_dpop" name="require_dpop" value="on" checked' in page.text
    assert 'title="tokens for it are DPoP-bound only">DPoP required' in (await carol.get("/admin/servers")).text
    without = {name: value for name, value in form.items() if name != "require_dpop"}
    assert (await carol.post("/admin/servers/crm", data=without)).status_code == 303  # an unticked box: off
    assert required(state, "crm") is False
    refused = await carol.post("/admin/servers/crm", data={**form, "scopes": ""})  # invalid: nothing changes
    assert refused.status_code == 400 and required(state, "crm") is False


# ---------------------------------------------------------------- what the switches do at the token endpoint


async def code_for(client: httpx.AsyncClient, client_id: str) -> tuple[str, str]:
    verifier, challenge = pkce()
    return (await authorize(client, client_id, challenge))["code"], verifier


async def test_a_client_registered_by_dcr_for_dpop_bound_tokens_gets_none_without_a_proof(
        client: httpx.AsyncClient, state: Any) -> None:
    registered = await client.post("/register", json={"client_name": "Agent", "redirect_uris": [CLIENT_REDIRECT],
                                                      "token_endpoint_auth_method": "none",
                                                      "dpop_bound_access_tokens": True})
    client_id = registered.json()["client_id"]
    code, verifier = await code_for(client, client_id)
    refused = await exchange(client, client_id, code, verifier)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert "registered for DPoP-bound access tokens only" in refused.json()["error_description"]
    code, verifier = await code_for(client, client_id)
    bound_token = await exchange(client, client_id, code, verifier, headers={"DPoP": DpopKey().proof("POST", TOKEN)})
    assert bound_token.status_code == 200 and bound_token.json()["token_type"] == "DPoP", bound_token.text


async def test_a_server_the_cli_requires_dpop_for_gets_no_bearer_token_until_it_is_turned_off(
        client: httpx.AsyncClient, state: Any, cli: Any) -> None:
    agent = register_client(state).row.id
    assert cli(["servers", "update", "demo", "--require-dpop"]) == 0
    code, verifier = await code_for(client, agent)
    refused = await exchange(client, agent, code, verifier)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert "accepts DPoP-bound access tokens only" in refused.json()["error_description"]
    bound_token = await exchange(client, agent, code, verifier, headers={"DPoP": DpopKey().proof("POST", TOKEN)})
    assert bound_token.status_code == 200 and bound_token.json()["token_type"] == "DPoP", bound_token.text
    assert cli(["servers", "update", "demo", "--no-require-dpop"]) == 0
    code, verifier = await code_for(client, agent)
    bearer_token = await exchange(client, agent, code, verifier)
    assert bearer_token.status_code == 200 and bearer_token.json()["token_type"] == "Bearer", bearer_token.text
