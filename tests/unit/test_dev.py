"""`broker dev` and dev data directories: a --config file overrides only what it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn

from broker import dev
from broker.cli import main

OKTA = ('[[idps]]\nid = "okta"\ntype = "okta"\nissuer = "https://acme.okta.com"\nclient_id = "0oa1"\n'
        'client_secret = "from-the-file"\n')


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """`broker dev` up to the point where uvicorn would serve (which it does not, here)."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    monkeypatch.setattr(dev, "demo_app", lambda issuer, secret=None: None)
    for name in ("BROKER_CONFIG", "BROKER_MODE", "BROKER_ISSUER", "BROKER_DATABASE__URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return seen


def broker_dev(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str | None) -> tuple[int, str, str]:
    argv = ["dev", "--port", "8765", "--data-dir", str(tmp_path / "state")]
    if text is not None:
        (tmp_path / "dev.toml").write_text(text)
        argv += ["--config", str(tmp_path / "dev.toml")]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_dev_with_its_own_idps_starts(started, capsys, tmp_path: Path) -> None:
    code, out, err = broker_dev(capsys, tmp_path, OKTA)
    assert code == 0, err
    settings = started["app"].state.broker.settings
    assert [idp.id for idp in settings.idps] == ["okta"]
    assert settings.id_jag.trusted_issuers == []  # the test IdP's ID-JAGs are trusted only while it is an IdP
    assert "test IdP" in out  # still running, for [[testidp.clients]] of your own


def test_dev_banner_advertises_the_test_idp_only_when_it_runs(started, capsys, tmp_path: Path) -> None:
    code, out, _ = broker_dev(capsys, tmp_path, "[testidp]\nenabled = false\n" + OKTA)
    assert code == 0
    assert "testidp" not in out and "demo users" not in out and "sign in as" not in out
    assert started["app"].state.broker.testidp is None
    code, out, _ = broker_dev(capsys, tmp_path, None)
    assert "/testidp/.well-known/openid-configuration" in out and "password: demo" in out
    assert "(sign in as carol)" in out


def test_dev_config_can_add_to_the_dev_lists(started, capsys, tmp_path: Path) -> None:
    text = ('[[extend.testidp.clients]]\nclient_id = "agent"\nclient_secret = "agent-secret"\n'
            'redirect_uris = ["http://127.0.0.1:9/cb"]\n' + OKTA.replace("[[idps]]", "[[extend.idps]]"))
    code, _, err = broker_dev(capsys, tmp_path, text)
    assert code == 0, err
    settings = started["app"].state.broker.settings
    assert [c.client_id for c in settings.testidp.clients] == [dev.TESTIDP_CLIENT_ID, "agent"]
    assert [idp.id for idp in settings.idps] == ["test", "okta"]
    assert [t.idp for t in settings.id_jag.trusted_issuers] == ["test"]


def test_config_on_a_dev_data_dir_keeps_the_other_dev_defaults(started, capsys, tmp_path: Path) -> None:
    assert broker_dev(capsys, tmp_path, None)[0] == 0
    (tmp_path / "extra.toml").write_text('[logging]\nformat = "json"\n')
    code = main(["clients", "list", "--json", "--config", str(tmp_path / "extra.toml"),
                 "--data-dir", str(tmp_path / "state")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "demo-mcp-server" in out  # the dev broker's own database, found through its dev settings


def test_a_production_config_on_a_dev_data_dir_takes_no_dev_defaults(started, capsys, tmp_path: Path) -> None:
    assert broker_dev(capsys, tmp_path, None)[0] == 0
    (tmp_path / "prod.toml").write_text('mode = "production"\nissuer = "https://auth.example.com"\n')
    code = main(["clients", "list", "--config", str(tmp_path / "prod.toml"), "--data-dir", str(tmp_path / "state")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("broker: configuration: keys.key_encryption_key: required in production")
