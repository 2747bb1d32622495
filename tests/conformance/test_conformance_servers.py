"""``broker.storage.mcp_servers``: registered MCP servers as ``ServerRow``s."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.exc import IntegrityError

from broker.storage import changes, mcp_servers
from broker.storage.db import Database
from broker.storage.mcp_servers import ServerRow

NOW = dt.datetime(2026, 12, 7, 9, 15, 30, 123456, tzinfo=dt.UTC)


def server(server_id: str = "github", **changed: object) -> ServerRow:
    row = ServerRow(id=server_id, name=f"{server_id.title()} MCP", description="", resource=f"https://{server_id}.example/mcp",
                    scopes={"repo:read": "Read"}, default_scopes=["repo:read"], tags=["code"],
                    access_token_lifetime=None, enabled=True, require_dpop=False, created_at=NOW, updated_at=NOW)
    return row._replace(**changed)


def test_a_server_reads_back_as_it_was_added(database: Database) -> None:
    added = server(description="Säid", scopes={"a": "A", "b": "B"}, access_token_lifetime=600, require_dpop=True)
    with database.transaction() as session:
        mcp_servers.add(session, added)
    with database.transaction() as session:
        assert mcp_servers.get(session, "github") == added
        assert mcp_servers.by_resource(session, added.resource) == added
        assert type(mcp_servers.get(session, "github")) is ServerRow


def test_unknown_ids_and_resources_are_none(database: Database) -> None:
    with database.transaction() as session:
        mcp_servers.add(session, server())
        assert mcp_servers.get(session, "gitlab") is None
        assert mcp_servers.by_resource(session, "https://github.example/mcp/") is None  # exactly as stored


def test_list_all_is_every_server_by_id_on_both_lanes(database: Database) -> None:
    with database.transaction() as session:
        for server_id in ("zendesk", "github", "jira"):
            mcp_servers.add(session, server(server_id, enabled=server_id != "jira", require_dpop=server_id == "jira"))
    with database.transaction() as session:
        listed = mcp_servers.list_all(session)
        assert [row.id for row in listed] == ["github", "jira", "zendesk"]
        assert mcp_servers.count(session) == 3
    assert all(type(row) is ServerRow for row in listed)


async def test_the_hot_lane_lists_what_the_cold_lane_lists(database: Database) -> None:
    with database.transaction() as session:
        mcp_servers.add(session, server("github"))
        mcp_servers.add(session, server("jira"))
        cold = mcp_servers.list_all(session)
    async with database.hot.read() as tx:
        assert await mcp_servers.list_all_hot(tx) == cold


def test_save_replaces_every_column_but_the_id(database: Database) -> None:
    with database.transaction() as session:
        mcp_servers.add(session, server())
        mcp_servers.add(session, server("jira"))
    later = NOW + dt.timedelta(hours=1)
    changed = server(name="Renamed", resource="https://new.example/mcp", scopes={"x": "X"}, default_scopes=[],
                     tags=[], access_token_lifetime=60, enabled=False, require_dpop=True, updated_at=later)
    with database.transaction() as session:
        mcp_servers.save(session, changed)
    with database.transaction() as session:
        assert mcp_servers.get(session, "github") == changed
        assert mcp_servers.get(session, "jira") == server("jira")


def test_names_by_id_and_by_resource_leave_out_what_is_not_registered(database: Database) -> None:
    with database.transaction() as session:
        mcp_servers.add(session, server("github"))
        mcp_servers.add(session, server("jira"))
        assert mcp_servers.names(session, {"github", "nope"}) == {"github": "Github MCP"}
        assert mcp_servers.names(session, set()) == {}
        assert mcp_servers.names_by_resource(session, {"https://jira.example/mcp", "https://x"}) == {
            "https://jira.example/mcp": "Jira MCP"}
        assert mcp_servers.names_by_resource(session, []) == {}


def test_ids_named_match_part_of_the_name_in_any_case_and_take_wildcards_literally(database: Database) -> None:
    with database.transaction() as session:
        mcp_servers.add(session, server("github", name="GitHub Enterprise"))
        mcp_servers.add(session, server("jira", name="Jira 100% cloud"))
        mcp_servers.add(session, server("wiki", name="Wiki_pages"))
        assert mcp_servers.ids_named(session, "hub ENT", 10) == ["github"]
        assert mcp_servers.ids_named(session, "100%", 10) == ["jira"]
        assert mcp_servers.ids_named(session, "i_p", 10) == ["wiki"]
        assert mcp_servers.ids_named(session, "%", 10) == ["jira"]
        assert len(mcp_servers.ids_named(session, "i", 1)) == 1


def test_an_id_or_a_resource_is_registered_once(database: Database) -> None:
    with database.transaction() as session:
        mcp_servers.add(session, server())
    for duplicate in (server(resource="https://other.example/mcp"), server("other", resource=server().resource)):
        with pytest.raises(IntegrityError), database.transaction() as session:
            mcp_servers.add(session, duplicate)


def test_changes_show_to_the_registry_cache_once_committed(database: Database) -> None:
    before = changes.generation("mcp_servers")
    with database.transaction() as session:
        mcp_servers.add(session, server())
        assert changes.generation("mcp_servers") == before  # not before the commit
    assert changes.generation("mcp_servers") == before + 1
    with database.transaction() as session:
        mcp_servers.save(session, server(name="Other"))
    assert changes.generation("mcp_servers") == before + 2
    with pytest.raises(RuntimeError), database.transaction() as session:
        mcp_servers.save(session, server(name="Rolled back"))
        raise RuntimeError
    assert changes.generation("mcp_servers") == before + 2


async def test_longest_lifetime_is_the_largest_a_server_sets_disabled_ones_included(database: Database) -> None:
    with database.transaction() as session:
        assert mcp_servers.longest_lifetime(session) is None
        mcp_servers.add(session, server("github", access_token_lifetime=600))
        mcp_servers.add(session, server("jira", access_token_lifetime=3600, enabled=False))
        mcp_servers.add(session, server("wiki"))
        assert mcp_servers.longest_lifetime(session) == 3600
    async with database.hot.read() as tx:
        assert await mcp_servers.longest_lifetime_hot(tx) == 3600
