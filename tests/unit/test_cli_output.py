"""What scripts and operators read from the command line: --json records, progress on stderr, warnings,
and one line with exit code 2 for a known failure."""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path

import pytest
import uvicorn

from broker import config
from broker.cli import audit as audit_cli
from broker.cli import main
from broker.cli.progress import Progress

POLICY = ('[[rules]]\nid = "eng"\neffect = "allow"\nscopes = "*"\n[rules.subjects]\ngroups = ["engineering"]\n'
          '[rules.targets]\nall = true\n')


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    values = {"BROKER_MODE": "dev", "BROKER_ISSUER": "http://127.0.0.1:8000", "BROKER_LOGGING__FORMAT": "text",
              "BROKER_KEYS__KEY_ENCRYPTION_KEY": config.new_kek(), "BROKER_DATA_DIR": str(tmp_path / "var"),
              "BROKER_SERVER__WORKERS": "1"}  # serve sets it: monkeypatch puts it back
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    for name in ("BROKER_CONFIG", "BROKER_DATABASE__URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["db", "upgrade"]) == 0
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_policy_import_json_for_a_dry_run_and_an_apply(env: Path, capsys) -> None:
    (env / "policy.toml").write_text(POLICY)
    assert main(["servers", "add", "--id", "demo", "--name", "Demo", "--resource", "http://127.0.0.1:8000/demo/mcp",
                 "--scopes", "tools:read"]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "policy", "import", str(env / "policy.toml"), "--dry-run", "--json")
    record = json.loads(out)
    assert code == 0 and (record["dry_run"], record["applied"], record["version"]) == (True, False, None)
    assert record["rule_changes"] == [{"kind": "added", "rule_id": "eng"}] and record["known_users"] == 0
    assert any(c["subject"] == "engineering" and c["kind"] == "gains" for c in record["subject_changes"])
    code, out, _ = run(capsys, "policy", "import", str(env / "policy.toml"), "--json")
    record = json.loads(out)
    assert code == 0 and record["applied"] is True and record["version"] == record["base_version"] + 1


def test_policy_import_json_lists_the_problems_and_exits_2(env: Path, capsys) -> None:
    (env / "bad.toml").write_text('[[rules]]\nid = "x"\neffect = "maybe"\n')
    capsys.readouterr()
    code, out, err = run(capsys, "policy", "import", str(env / "bad.toml"), "--json")
    assert code == 2 and json.loads(out)["applied"] is False and json.loads(out)["problems"]
    assert err.count("\n") == 1 and "nothing was applied" in err


def test_audit_verify_json(env: Path, capsys) -> None:
    capsys.readouterr()
    code, out, _ = run(capsys, "audit", "verify", "--json")
    record = json.loads(out)
    assert code == 0 and record["ok"] is True and record["broken_seq"] is None
    assert record["checked"] == record["head_seq"]


def test_audit_verify_and_export_show_progress_on_stderr(env: Path, capsys, monkeypatch) -> None:
    (env / "policy.toml").write_text(POLICY)
    assert main(["policy", "import", str(env / "policy.toml")]) == 0  # an audit event or two
    monkeypatch.setattr(audit_cli, "Progress", functools.partial(Progress, after=0.0, every=0.0))
    capsys.readouterr()
    code, out, err = run(capsys, "audit", "verify")
    assert code == 0 and out.startswith("audit chain intact")
    assert err.splitlines()[-1].startswith("broker: audit verify: events checked: ")
    code, out, err = run(capsys, "audit", "export")
    events = out.splitlines()
    assert code == 0 and events and err.splitlines()[-1] == f"broker: audit export: events written: {len(events)} " \
                                                            f"of {len(events)}"


def test_progress_stays_quiet_for_a_second_then_counts() -> None:
    now = [0.0]
    stream = io.StringIO()
    progress = Progress("work", 10, stream=stream, clock=lambda: now[0], every=2.0)
    progress.advance(3)
    now[0] = 0.9
    progress.advance(1)
    assert stream.getvalue() == ""
    now[0] = 1.0
    progress.advance(1)
    now[0] = 2.0
    progress.advance(1)  # within `every` of the last line: not shown
    progress.done()
    assert stream.getvalue().splitlines() == ["broker: work: 5 of 10", "broker: work: 6 of 10"]
    quiet = io.StringIO()
    fast = Progress("work", stream=quiet, clock=lambda: 0.0)
    fast.advance(100)
    fast.done()
    assert quiet.getvalue() == ""


def test_serve_warns_when_several_workers_share_sqlite(env: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: None)
    code, _, err = run(capsys, "serve", "--workers", "2")
    assert code == 0 and "broker: warning: 2 workers on SQLite" in err and "use PostgreSQL" in err
    code, _, err = run(capsys, "serve", "--workers", "1")
    assert code == 0 and "warning" not in err


@pytest.mark.parametrize("argv,message", [
    (["serve", "--port", "99999"], "broker: --port: 99999 is not a valid port (1-65535)\n"),
    (["clients", "add", "--name", " ", "--redirect-uri", "https://a.example/cb"],
     "broker: --name: must not be empty (users see it on the consent page)\n"),
])
def test_bad_arguments_are_one_line_with_exit_2(env: Path, capsys, argv: list[str], message: str) -> None:
    capsys.readouterr()
    code, _, err = run(capsys, *argv)
    assert (code, err) == (2, message)
