"""The revocation feed MCP servers poll: families, token ids and users' not-before, in order."""

from __future__ import annotations

import httpx

from tests.support.oauth_flow import DEMO_RESOURCE, refresh, register_client, tokens_for


def resource_server(state):
    return register_client(state, name="RS", auth_method="client_secret_basic", redirect_uris=[],
                           grant_types=("client_credentials",), may_introspect=True)


async def test_feed_lists_revocations_after_the_cursor(client: httpx.AsyncClient, state) -> None:
    rs = resource_server(state)
    app_client = register_client(state, trusted=True)
    first = await tokens_for(client, app_client.row.id)
    second = await tokens_for(client, app_client.row.id)
    empty = (await client.get("/revocations", auth=(rs.row.id, rs.secret))).json()
    assert empty == {"cursor": 0, "revocations": [], "has_more": False}
    await client.post("/revoke", data={"token": first["refresh_token"], "client_id": app_client.row.id})
    page = (await client.get("/revocations?since=0", auth=(rs.row.id, rs.secret))).json()
    [entry] = page["revocations"]
    assert entry["kind"] == "family" and entry["sid"]
    await client.post("/revoke", data={"token": second["access_token"], "client_id": app_client.row.id})
    later = (await client.get(f"/revocations?since={page['cursor']}", auth=(rs.row.id, rs.secret))).json()
    kinds = sorted(e["kind"] for e in later["revocations"])
    assert kinds == ["family", "token"] and later["cursor"] > page["cursor"]
    reuse = await refresh(client, app_client.row.id, first["refresh_token"])
    assert reuse.json()["error"] == "invalid_grant"


async def test_feed_requires_a_resource_server_client(client: httpx.AsyncClient, state) -> None:
    other = register_client(state, auth_method="client_secret_basic")
    assert (await client.get("/revocations")).status_code == 401
    denied = await client.get("/revocations", auth=(other.row.id, other.secret))
    assert denied.status_code == 403 and denied.json()["error"] == "access_denied"
    rs = resource_server(state)
    bad = await client.get("/revocations?since=abc", auth=(rs.row.id, rs.secret))
    assert bad.status_code == 400


async def test_a_disabled_client_neither_introspects_nor_reads_the_feed_nor_revokes(client: httpx.AsyncClient,
                                                                                     state) -> None:
    """Disabling a resource server's client (a leaked secret) cuts it off at once: 401 invalid_client at
    /introspect, /revocations and /revoke, and nothing described."""
    from broker.admin import clients as client_admin
    from broker.storage import clients as client_repo

    rs = resource_server(state)
    app_client = register_client(state, trusted=True)
    tokens = await tokens_for(client, app_client.row.id)
    assert (await client.post("/introspect", data={"token": tokens["access_token"]},
                              auth=(rs.row.id, rs.secret))).json()["active"]
    with state.database.transaction() as session:
        client_admin.disable(session, client_repo.get(session, rs.row.id), actor="test")
    calls = [client.post("/introspect", data={"token": tokens["access_token"]}, auth=(rs.row.id, rs.secret)),
             client.get("/revocations", auth=(rs.row.id, rs.secret)),
             client.post("/revoke", data={"token": "x"}, auth=(rs.row.id, rs.secret))]
    for call in calls:
        refused = await call
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client", refused.text
        assert refused.headers["www-authenticate"].startswith("Basic")


async def test_a_client_cannot_revoke_another_clients_tokens(client: httpx.AsyncClient, state) -> None:
    """RFC 7009 §2.1: the token must have been issued to the revoking client; otherwise an error and no
    revocation (docs/security.md gap 9)."""
    rs = resource_server(state)
    owner, intruder = register_client(state, trusted=True), register_client(state, trusted=True)
    tokens = await tokens_for(client, owner.row.id)
    for token in (tokens["refresh_token"], tokens["access_token"]):
        refused = await client.post("/revoke", data={"token": token, "client_id": intruder.row.id})
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    feed = (await client.get("/revocations?since=0", auth=(rs.row.id, rs.secret))).json()
    assert feed["revocations"] == []
    introspected = await client.post("/introspect", data={"token": tokens["access_token"]}, auth=(rs.row.id, rs.secret))
    assert introspected.json()["active"] is True
    assert (await refresh(client, owner.row.id, tokens["refresh_token"])).status_code == 200


async def test_revoking_a_token_again_adds_nothing_to_the_feed(client: httpx.AsyncClient, state) -> None:
    """Each revocation is an entry every MCP server downloads: revoking the same token again (any number of
    times, access or refresh token) answers 200 as RFC 7009 §2.2 says and writes no entry and no audit event."""
    from sqlalchemy import func, select

    from broker.storage.models import AuditEvent

    rs = resource_server(state)
    app_client = register_client(state, trusted=True)
    tokens = await tokens_for(client, app_client.row.id)
    other = await tokens_for(client, app_client.row.id)
    for token in (tokens["access_token"], other["refresh_token"]):
        for _ in range(25):
            revoked = await client.post("/revoke", data={"token": token, "client_id": app_client.row.id})
            assert revoked.status_code == 200
    feed = (await client.get("/revocations?since=0&limit=1000", auth=(rs.row.id, rs.secret))).json()
    kinds = sorted(entry["kind"] for entry in feed["revocations"])
    assert kinds == ["family", "family", "token"]  # the token, its family, the other family
    with state.database.sessions() as session:
        audited = session.scalar(select(func.count()).select_from(AuditEvent)
                                 .where(AuditEvent.event_type == "token.revoked"))
    assert audited == 2


async def test_introspection_describes_a_token_only_to_its_audience(client: httpx.AsyncClient, state) -> None:
    """RFC 7662 §4: a resource server's client learns the claims of the tokens of the MCP servers it is bound to
    (resource_servers), and of no others; a refresh token is described only to the client it was issued to."""
    from tests.support.oauth_flow import allow_clients

    demo_rs = resource_server(state)  # bound to demo
    unbound = register_client(state, name="CRM server", auth_method="client_secret_basic", redirect_uris=[],
                              grant_types=(), may_introspect=True, resource_servers=())
    app_client = register_client(state, trusted=True)
    tokens = await tokens_for(client, app_client.row.id)
    robot = register_client(state, name="Robot", auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",), scopes=("tools:read",))
    allow_clients(state, robot.row.id)

    async def active(rs, token: str) -> bool:
        answer = (await client.post("/introspect", data={"token": token}, auth=(rs.row.id, rs.secret))).json()
        assert answer["active"] or answer == {"active": False}  # nothing else said about a token not described
        return answer["active"]

    assert await active(demo_rs, tokens["access_token"])
    assert not await active(unbound, tokens["access_token"])  # another server's token
    assert not await active(demo_rs, tokens["refresh_token"])  # a user's refresh token, not demo_rs's own
    machine = (await client.post("/token", data={"grant_type": "client_credentials", "resource": DEMO_RESOURCE},
                                 auth=(robot.row.id, robot.secret))).json()["access_token"]
    assert await active(demo_rs, machine) and not await active(unbound, machine)


async def test_a_client_may_introspect_its_own_refresh_token(client: httpx.AsyncClient, state) -> None:
    own = register_client(state, name="Confidential app", auth_method="client_secret_basic", trusted=True,
                          may_introspect=True)
    tokens = await tokens_for(client, own.row.id, secret=own.secret)
    answer = (await client.post("/introspect", data={"token": tokens["refresh_token"]},
                                auth=(own.row.id, own.secret))).json()
    assert answer["active"] and answer["token_type"] == "refresh_token" and answer["client_id"] == own.row.id


async def test_the_feed_takes_http_basic_only_and_says_so(client: httpx.AsyncClient, state) -> None:
    """A GET has no body and credentials never go in a URL (RFC 6749 §2.3.1): the feed cannot be read with
    client_secret_post or a client assertion, and its refusal names the one method it takes."""
    posting = register_client(state, name="RS", auth_method="client_secret_post", redirect_uris=[],
                              grant_types=("client_credentials",), may_introspect=True)
    in_the_url = await client.get("/revocations", params={"client_id": posting.row.id,
                                                          "client_secret": posting.secret})
    assert in_the_url.status_code == 401 and in_the_url.json() == {
        "error": "invalid_client",
        "error_description": "this request needs client authentication with client_secret_basic; "
                             "the request carried no client credentials"}
    as_basic = await client.get("/revocations", auth=(posting.row.id, posting.secret))
    assert as_basic.status_code == 401
    assert as_basic.json()["error_description"] == ("the client is registered for client_secret_post; "
                                                    "the request used client_secret_basic")
    both = register_client(state, name="RS2", auth_method=("client_secret_post", "client_secret_basic"),
                           redirect_uris=[], grant_types=("client_credentials",), may_introspect=True)
    assert (await client.get("/revocations", auth=(both.row.id, both.secret))).status_code == 200
