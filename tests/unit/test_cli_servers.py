"""`broker servers`: the registry from the command line, with every bad input refused and nothing written."""

from __future__ import annotations

import json

import pytest

from broker import config
from broker.cli import main


@pytest.fixture
def env(monkeypatch, database_url: str, capsys) -> None:
    for key, value in {"BROKER_MODE": "dev", "BROKER_ISSUER": "http://127.0.0.1:8000",
                       "BROKER_KEYS__KEY_ENCRYPTION_KEY": config.new_kek(), "BROKER_DATABASE__URL": database_url,
                       "BROKER_LOGGING__FORMAT": "text"}.items():
        monkeypatch.setenv(key, value)
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_show_update_disable(env, capsys) -> None:
    code, out, _ = run(capsys, "servers", "add", "--id", "github", "--name", "GitHub", "--resource",
                       "HTTPS://MCP.Example.com/github/", "--scopes", "repo:read repo:write", "--default-scopes",
                       "repo:read", "--tag", "source-control", "--json")
    added = json.loads(out)
    assert code == 0 and added["resource"] == "https://mcp.example.com/github"  # canonical form
    assert added["default_scopes"] == ["repo:read"] and added["tags"] == ["source-control"]
    code, out, _ = run(capsys, "servers", "update", "github", "--name", "GitHub Enterprise", "--json")
    assert code == 0 and json.loads(out)["name"] == "GitHub Enterprise"
    assert json.loads(out)["scopes"] == {"repo:read": "", "repo:write": ""}
    assert run(capsys, "servers", "disable", "github")[0] == 0
    code, out, _ = run(capsys, "servers", "list", "--json")
    assert [s["enabled"] for s in json.loads(out)] == [False]


@pytest.mark.parametrize("argv,message", [
    (["--id", "Bad Id", "--name", "x", "--resource", "https://a.example/m", "--scopes", "a"], "id: use"),
    (["--id", "x", "--name", "x", "--resource", "https://a.example/m#f", "--scopes", "a"], "fragment"),
    (["--id", "x", "--name", "x", "--resource", "ftp://a.example/m", "--scopes", "a"], "http(s)"),
    (["--id", "x", "--name", "x", "--resource", "https://a.example/m", "--scopes", "a",
      "--default-scopes", "b"], "default-scopes: 'b'"),
    (["--id", "x", "--name", "x", "--resource", "https://a.example/m", "--scopes", "a",
      "--access-token-lifetime", "5"], "access-token-lifetime"),
])
def test_bad_definitions_are_refused_and_nothing_written(env, capsys, argv, message) -> None:
    code, _, err = run(capsys, "servers", "add", *argv)
    assert code == 2 and message in err and err.count("\n") == 1
    code, out, _ = run(capsys, "servers", "list", "--json")
    assert json.loads(out) == []


def test_duplicate_resource_or_id_is_refused(env, capsys) -> None:
    base = ["servers", "add", "--name", "A", "--resource", "https://a.example/mcp", "--scopes", "read"]
    assert run(capsys, *base, "--id", "a")[0] == 0
    code, _, err = run(capsys, *base, "--id", "b")
    assert code == 2 and "belongs to another server" in err
    code, _, err = run(capsys, "servers", "add", "--id", "a", "--name", "A", "--resource", "https://b.example/mcp",
                       "--scopes", "read")
    assert code == 2 and "exists already" in err


def test_unknown_server(env, capsys) -> None:
    assert run(capsys, "servers", "show", "nope")[:1] == (2,)


def test_every_change_is_audited_with_before_and_after(env, capsys, database_url) -> None:
    from sqlalchemy import select

    from broker.storage.db import Database
    from broker.storage.models import AuditEvent

    run(capsys, "servers", "add", "--id", "wiki", "--name", "Wiki", "--resource", "https://wiki.example/mcp",
        "--scopes", "read write")
    run(capsys, "servers", "update", "wiki", "--default-scopes", "read")
    run(capsys, "servers", "disable", "wiki")
    database = Database(database_url)
    with database.sessions() as session:
        rows = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    database.dispose()
    assert [r.event_type for r in rows] == ["server.added", "server.updated", "server.disabled"]
    assert rows[1].data["before"]["default_scopes"] == ["read", "write"]
    assert rows[1].data["after"]["default_scopes"] == ["read"]
    assert rows[2].actor.startswith("cli:") and rows[2].data["after"]["enabled"] is False
