"""The command line: exit codes, one-line errors, and nothing written on bad input."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from broker import config
from broker.cli import build_parser, main
from broker.storage import signing_keys
from broker.storage.db import Database
from broker.storage.migrate import head_revision
from broker.storage.models import utcnow


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str) -> dict[str, str]:
    values = {"BROKER_MODE": "dev", "BROKER_ISSUER": "http://127.0.0.1:8000",
              "BROKER_KEYS__KEY_ENCRYPTION_KEY": config.new_kek(), "BROKER_DATABASE__URL": database_url,
              "BROKER_LOGGING__FORMAT": "text"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def key_count(url: str) -> int:
    database = Database(url)
    try:
        with database.sessions() as session:
            return len(signing_keys.all_keys(session))
    finally:
        database.dispose()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_db_upgrade_from_empty_then_unchanged(env, capsys) -> None:
    head = head_revision()
    assert run(capsys, "db", "upgrade")[:2] == (0, f"schema at {head} (was empty)\n")
    assert run(capsys, "db", "upgrade")[:2] == (0, f"schema at {head} (unchanged)\n")
    assert run(capsys, "db", "status")[0] == 0


def test_keys_rotate_and_list(env, capsys) -> None:
    run(capsys, "db", "upgrade")
    code, out, _ = run(capsys, "keys", "rotate")
    assert code == 0 and out.startswith("added key ")
    code, out, _ = run(capsys, "keys", "list", "--json")
    keys = json.loads(out)
    assert code == 0 and [k["state"] for k in keys] == ["pending"]  # published now, signs after the delay
    code, out, _ = run(capsys, "keys", "rotate", "--now")
    states = sorted(k["state"] for k in json.loads(run(capsys, "keys", "list", "--json")[1]))
    assert states == ["retired (published)", "signing"]


def test_keys_rotate_schedules_activation_delay_seconds_ahead(env, capsys, monkeypatch) -> None:
    run(capsys, "db", "upgrade")
    monkeypatch.setenv("BROKER_KEYS__ACTIVATION_DELAY", "3600")
    delay = dt.timedelta(seconds=3600)
    before = utcnow().replace(microsecond=0)
    code, out, _ = run(capsys, "keys", "rotate")
    signs_from = dt.datetime.fromisoformat(out.strip().rsplit("signs from ", 1)[1])
    assert code == 0 and before + delay <= signs_from <= utcnow() + delay
    code, out, _ = run(capsys, "keys", "rotate", "--json")
    key = json.loads(out)
    assert code == 0 and key["state"] == "pending"
    assert before + delay <= dt.datetime.fromisoformat(key["activates_at"]) <= utcnow() + delay


def test_wrong_kek_is_refused_and_nothing_is_written(env, capsys, monkeypatch) -> None:
    run(capsys, "db", "upgrade")
    run(capsys, "keys", "rotate", "--now")
    monkeypatch.setenv("BROKER_KEYS__KEY_ENCRYPTION_KEY", config.new_kek())
    code, out, err = run(capsys, "keys", "rotate")
    assert code == 2 and out == ""
    assert err.startswith("broker: keys.key_encryption_key: cannot decrypt stored signing key ")
    assert err.count("\n") == 1
    assert key_count(env["BROKER_DATABASE__URL"]) == 1


def test_serve_refuses_a_stale_schema_naming_the_command(env, capsys) -> None:
    code, _, err = run(capsys, "serve")
    assert code == 2
    assert err == "broker: the database has no schema yet: run `broker db upgrade`\n"


def test_the_commands_load_without_the_web_stack() -> None:
    """Every one-shot command starts a process: `broker serve` and `broker dev` import the web stack when they run,
    the others never (it cost each ~1 s of its start, ~3 s on a loaded machine)."""
    code = "import sys, broker.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in WEB or m in WEB))"
    web = ("fastapi", "starlette", "uvicorn", "jinja2", "broker.app", "broker.web")
    done = subprocess.run([sys.executable, "-c", f"WEB = {web!r}\n{code}"], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout == "[]\n", done.stdout


@pytest.mark.parametrize(("command", "part", "attribute"), [("serve", "templates", "TEMPLATES"),
                                                            ("serve", "static files", "STATIC"),
                                                            ("dev", "templates", "TEMPLATES")])
def test_an_installation_without_its_pages_is_one_line(env, capsys, monkeypatch, tmp_path: Path, command: str,
                                                       part: str, attribute: str) -> None:
    """Before: `broker serve` died on a traceback (starlette: Directory ... does not exist), exit 1."""
    from broker import bundled

    run(capsys, "db", "upgrade")
    monkeypatch.setattr(bundled, attribute, tmp_path / "missing")
    code, out, err = run(capsys, command, "--port", "1", "--data-dir", str(tmp_path / "data"))
    assert (code, out) == (2, "")
    assert err == (f"broker: no {part} at {tmp_path / 'missing'}: this installation of mcp-auth-broker is "
                   "incomplete (reinstall it)\n")
    assert not (tmp_path / "data").exists()


def test_serve_refuses_a_wrong_kek_before_writing(env, capsys, monkeypatch) -> None:
    run(capsys, "db", "upgrade")
    run(capsys, "keys", "rotate", "--now")
    monkeypatch.setenv("BROKER_KEYS__KEY_ENCRYPTION_KEY", config.new_kek())
    code, _, err = run(capsys, "serve")
    assert code == 2 and "cannot decrypt stored signing key" in err and err.count("\n") == 1
    assert key_count(env["BROKER_DATABASE__URL"]) == 1


def test_configuration_errors_are_listed_one_per_line(env, capsys, monkeypatch, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('mode = "production"\nissuer = "http://auth.example.com"\n[server]\nport = "x"\nworkers = 0\n')
    monkeypatch.delenv("BROKER_MODE")
    monkeypatch.delenv("BROKER_ISSUER")
    code, _, err = run(capsys, "db", "upgrade", "--config", str(bad))
    lines = err.splitlines()
    assert code == 2 and len(lines) == 3
    assert all(line.startswith("broker: configuration: ") for line in lines)
    assert "server.port" in lines[0] and "server.workers" in lines[1]
    assert "issuer: production mode requires https" in lines[2]  # cross-field checks run beside type errors


def test_production_refusal_exits_2(env, capsys, monkeypatch) -> None:
    monkeypatch.setenv("BROKER_MODE", "production")
    monkeypatch.setenv("BROKER_ISSUER", "http://auth.example.com")
    code, _, err = run(capsys, "db", "upgrade")
    assert code == 2
    assert err == "broker: configuration: issuer: production mode requires https (http is allowed only on loopback)\n"


def test_unreachable_database_is_one_line(env, capsys, monkeypatch) -> None:
    monkeypatch.setenv("BROKER_DATABASE__URL", "postgresql://nobody@127.0.0.1:1/none")
    code, _, err = run(capsys, "db", "upgrade")
    assert code == 2 and err.startswith("broker: database unreachable: ") and err.count("\n") == 1


def test_unsupported_database_url(env, capsys, monkeypatch) -> None:
    monkeypatch.setenv("BROKER_DATABASE__URL", "oracle://x/y")
    code, _, err = run(capsys, "db", "upgrade")
    assert code == 2 and "unsupported database 'oracle'" in err


def test_data_dir_moves_the_sqlite_database(env, capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BROKER_DATABASE__URL")
    assert run(capsys, "db", "upgrade", "--data-dir", str(tmp_path / "state"))[0] == 0
    assert (tmp_path / "state" / "broker.db").exists()


def test_new_kek_prints_a_usable_key(capsys) -> None:
    code, out, _ = run(capsys, "keys", "new-kek")
    assert code == 0 and len(config.decode_kek(out.strip())) == 32


def all_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += all_commands(sub, prefix + (name,))
    return found


@pytest.mark.parametrize("command", all_commands(build_parser()), ids=lambda c: " ".join(c) or "broker")
def test_every_command_has_help(command: tuple[str, ...], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: broker" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["keys", "explode"])
    assert info.value.code == 2
