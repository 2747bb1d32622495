"""`broker db`: quiet upgrades with progress when they are slow, `status --json`, schemas a newer release
migrated, and one-line errors (exit 2) for what cannot work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker import bundled
from broker.storage import schema
from broker.storage.db import Database
from broker.storage.migrate import Progress, upgrade
from tests.support.migration_chain import CONTRACT, EXPAND, migrate, next_release
from tests.support.processes import run_broker
from tests.unit.test_cli import env, run  # noqa: F401  (env is the fixture these tests take)


def migrated_by_the_next_release(url: str, tmp_path: Path, revision: str) -> None:
    database = Database(url)
    try:
        upgrade(database)
        migrate(next_release(tmp_path), database, revision)
    finally:
        database.dispose()


def test_db_upgrade_says_one_line_and_nothing_else(env) -> None:  # noqa: F811
    done = run_broker("db", "upgrade", env=env)  # a fresh process: alembic is imported by the command itself
    # the whole chain takes ~0.7 s on SQLite with the machine loaded, more on PostgreSQL: past Progress.FIRST,
    # the broker's own progress lines are due (the next tests pin when); anything else on stderr is chatter
    chatter = [line for line in done.stderr.splitlines() if not line.startswith("broker: migrat")]
    assert (done.returncode, done.stdout, chatter) == (0, f"schema at {schema.HEAD} (was empty)\n", [])


def test_a_quick_upgrade_says_nothing_on_stderr(env, capsys, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setattr(Progress, "FIRST", 600.0)  # quick, whatever the machine's load
    assert run(capsys, "db", "upgrade") == (0, f"schema at {schema.HEAD} (was empty)\n", "")


def test_a_slow_upgrade_reports_progress_on_stderr(env, capsys, monkeypatch, tmp_path: Path) -> None:  # noqa: F811
    monkeypatch.setattr(bundled, "MIGRATIONS", next_release(tmp_path, sleep=1.6))
    code, out, err = run(capsys, "db", "upgrade")
    assert (code, out) == (0, f"schema at {CONTRACT} (was empty)\n")
    lines = err.splitlines()
    assert any(line.startswith("broker: migrating ") and line.endswith(" s so far") for line in lines), err
    assert any(line.startswith(f"broker: migrated {EXPAND} (Expand: ") for line in lines), err
    assert lines[-1].startswith(f"broker: migrated {CONTRACT} (Contract: ") and f"[{int(CONTRACT)}/{int(CONTRACT)}]" \
        in lines[-1]
    assert all(line.startswith("broker: migrat") for line in lines)


def test_db_status_json(env, capsys) -> None:  # noqa: F811
    code, out, _ = run(capsys, "db", "status", "--json")
    assert code == 1 and json.loads(out) == {"database": None, "broker": schema.HEAD, "oldest_supported": None,
                                             "state": "empty", "serves": False}
    run(capsys, "db", "upgrade")
    code, out, _ = run(capsys, "db", "status", "--json")
    assert code == 0 and json.loads(out)["state"] == "current" and json.loads(out)["serves"] is True


def test_a_schema_expanded_by_a_newer_release_still_serves(env, capsys, tmp_path: Path) -> None:  # noqa: F811
    migrated_by_the_next_release(env["BROKER_DATABASE__URL"], tmp_path, EXPAND)
    code, out, _ = run(capsys, "db", "status", "--json")
    assert code == 0 and json.loads(out) == {"database": EXPAND, "broker": schema.HEAD,
                                             "oldest_supported": schema.HEAD, "state": "ahead", "serves": True}
    code, out, err = run(capsys, "db", "upgrade")
    assert (code, err) == (0, "")
    assert out == f"schema at {EXPAND}, newer than this broker ({schema.HEAD}) and still supporting it: nothing to do\n"


def test_a_schema_contracted_by_a_newer_release_is_refused_in_one_line(env, capsys, tmp_path: Path) -> None:  # noqa: F811
    migrated_by_the_next_release(env["BROKER_DATABASE__URL"], tmp_path, CONTRACT)
    code, out, err = run(capsys, "db", "upgrade")
    advice = (f"broker: the database schema is at revision {CONTRACT}, newer than this broker ({schema.HEAD}), and "
              f"supports releases from revision {EXPAND} on: run a release that knows revision {CONTRACT}\n")
    assert (code, out, err) == (2, "", advice)
    assert run(capsys, "serve")[::2] == (2, advice)
    code, out, _ = run(capsys, "db", "status")
    assert code == 1 and f"database: {CONTRACT}\n" in out and "run a release that knows this revision" in out


def test_an_installation_without_migrations_is_one_line(env, capsys, monkeypatch, tmp_path: Path) -> None:  # noqa: F811
    monkeypatch.setattr(bundled, "MIGRATIONS", tmp_path / "missing")
    code, out, err = run(capsys, "db", "upgrade")
    assert (code, out) == (2, "")
    assert err == (f"broker: no migrations at {tmp_path / 'missing'}: this installation of mcp-auth-broker is "
                   "incomplete (reinstall it)\n")


@pytest.mark.parametrize("broken", ["missing parent", "unknown current"])
def test_a_broken_migration_chain_is_one_line(env, capsys, monkeypatch, tmp_path: Path, broken: str) -> None:  # noqa: F811
    chain = next_release(tmp_path)
    if broken == "missing parent":  # a revision whose parent is missing: alembic cannot build the chain
        (chain / "versions" / f"{EXPAND}_expand.py").unlink()
    monkeypatch.setattr(bundled, "MIGRATIONS", chain)
    if broken == "unknown current":
        run(capsys, "db", "upgrade")
        (chain / "versions" / f"{CONTRACT}_contract.py").unlink()  # the database is at a revision now unknown
        monkeypatch.setattr(schema, "KNOWN", schema.KNOWN | {EXPAND, CONTRACT})
    code, out, err = run(capsys, "db", "upgrade")
    assert code == 2 and out == "" and err.startswith("broker: migrations: ") and err.count("\n") == 1


def test_a_migration_the_database_refuses_is_one_line(env, capsys, monkeypatch, tmp_path: Path) -> None:  # noqa: F811
    chain = next_release(tmp_path)
    contract = chain / "versions" / f"{CONTRACT}_contract.py"
    contract.write_text(contract.read_text().replace(
        '    with op.batch_alter_table("clients") as batch:\n        batch.drop_column("rollout_note")',
        '    op.execute("UPDATE no_such_table SET x = 1")', 1))
    monkeypatch.setattr(bundled, "MIGRATIONS", chain)
    code, out, err = run(capsys, "db", "upgrade")
    *progress, failure = err.splitlines()
    assert (code, out) == (2, "") and all(line.startswith("broker: migrat") for line in progress)
    assert failure.startswith(f"broker: migration {CONTRACT} (Contract: ") and "no_such_table" in failure
