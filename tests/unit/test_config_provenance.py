"""Where each setting came from (file, environment, command line, broker dev, default), whether it differs
from the default, and secrets never shown."""

from __future__ import annotations

from pathlib import Path

from broker import config
from broker.config import provenance

KEK = config.new_kek()
DEV = {"mode": "dev", "issuer": "http://127.0.0.1:8000"}


def by_key(settings: config.Settings) -> dict[str, provenance.Entry]:
    return {entry.key: entry for entry in provenance.entries(settings)}


def test_each_value_names_the_layer_that_set_it(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text('issuer = "https://broker.example.com"\n[tokens]\naccess_token_lifetime = 120\n'
                    '[admin]\nadmin_groups = ["it-admins"]\n')
    env = {"BROKER_KEYS__KEY_ENCRYPTION_KEY": KEK, "BROKER_TOKENS__CLOCK_SKEW": "30"}
    settings = config.load(path, env=env, defaults={**DEV, "server": {"port": 9000}},
                           overrides={"data_dir": str(tmp_path)})
    found = by_key(settings)
    assert found["issuer"].source == str(path) and found["issuer"].value == '"https://broker.example.com"'
    assert found["tokens.access_token_lifetime"].source == str(path)
    assert found["tokens.clock_skew"].source == "environment variable BROKER_TOKENS__CLOCK_SKEW"
    assert found["data_dir"].source == "command line"
    assert found["mode"].source == "broker dev" and found["server.port"].source == "broker dev"
    assert found["tokens.id_token_lifetime"].source == "default" and not found["tokens.id_token_lifetime"].differs
    assert found["admin.admin_groups"].value == '["it-admins"]' and found["admin.admin_groups"].default == "[]"


def test_differs_compares_with_the_built_in_default_whoever_set_it(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text("[tokens]\naccess_token_lifetime = 300\nclock_skew = 90\n")
    found = by_key(config.load(path, env={}, defaults=DEV))
    assert found["tokens.access_token_lifetime"].source == str(path)
    assert not found["tokens.access_token_lifetime"].differs  # set, but to the default
    assert found["tokens.clock_skew"].differs and found["tokens.clock_skew"].default == "60"


def test_a_file_over_broker_devs_defaults_takes_the_keys_it_names(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text("[server]\nhost = \"0.0.0.0\"\n")
    found = by_key(config.load(path, env={}, defaults={**DEV, "server": {"host": "127.0.0.2", "port": 9000}}))
    assert found["server.host"].source == str(path) and found["server.port"].source == "broker dev"


def test_secrets_are_never_shown_and_say_where_they_came_from(tmp_path: Path) -> None:
    secret_file = tmp_path / "db-url"
    secret_file.write_text("postgresql+psycopg://broker:hunter2@db/broker\n")
    path = tmp_path / "broker.toml"
    path.write_text(f'[database]\nurl_file = "{secret_file}"\n[[idps]]\nid = "okta"\ntype = "okta"\n'
                    'issuer = "https://example.okta.com"\nclient_id = "broker"\nclient_secret = "s3cr3t-value"\n')
    settings = config.load(path, env={"BROKER_KEYS__KEY_ENCRYPTION_KEY": KEK}, defaults=DEV)
    entries = provenance.entries(settings)
    shown = " ".join(f"{e.value} {e.default}" for e in entries)
    for secret in ("hunter2", "s3cr3t-value", KEK):
        assert secret not in shown
    found = {e.key: e for e in entries}
    assert found["database.url"].value == "**********" and found["database.url"].secret
    assert found["database.url"].source == f"the file named by database.url_file ({path})"
    assert found["idps[0].client_secret"].value == "**********" and found["idps[0].client_secret"].source == str(path)
    assert found["keys.key_encryption_key"].differs and found["metrics.bearer_token"].value == ""
    assert found["idps[0].client_id"].value == '"broker"' and found["idps[0].client_id"].source == str(path)


def test_settings_built_without_load_say_default() -> None:
    found = by_key(config.Settings())
    assert {entry.source for entry in found.values()} == {"default"}
    assert not any(entry.differs for entry in found.values())
