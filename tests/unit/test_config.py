"""Configuration: typed loading, environment overrides, secrets from files, and every refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker import config
from broker.config import ConfigError, Mode

KEK = config.new_kek()


def load(text: str = "", env: dict[str, str] | None = None, tmp_path: Path | None = None, **kw) -> config.Settings:
    path = None
    if tmp_path is not None:
        path = tmp_path / "broker.toml"
        path.write_text(text)
    return config.load(path, env=env or {}, **kw)


def problems(*args, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(*args, **kwargs)
    return info.value.problems


def production(tmp_path: Path, extra: str = "", issuer: str = "https://auth.example.com") -> str:
    return f'mode = "production"\nissuer = "{issuer}"\n[keys]\nkey_encryption_key = "{KEK}"\n{extra}'


def test_minimal_production_config_loads_with_defaults(tmp_path: Path) -> None:
    settings = load(production(tmp_path), tmp_path=tmp_path)
    assert settings.mode is Mode.PRODUCTION
    assert settings.tokens.access_token_lifetime == 300
    assert settings.keys.algorithm == "ES256"
    assert settings.database_url == "sqlite:///var/broker.db"
    assert settings.key_encryption_key() == config.decode_kek(KEK)


def test_production_is_the_default_mode(tmp_path: Path) -> None:
    assert any("keys.key_encryption_key: required in production" in p
               for p in problems('issuer = "https://a.example"', tmp_path=tmp_path))


@pytest.mark.parametrize("issuer", ["http://auth.example.com", "http://10.0.0.5:8000"])
def test_production_refuses_plain_http_issuer(tmp_path: Path, issuer: str) -> None:
    found = problems(production(tmp_path, issuer=issuer), tmp_path=tmp_path)
    assert found == ["issuer: production mode requires https (http is allowed only on loopback)"]


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:8000", "http://localhost:9000", "http://[::1]:8000"])
def test_production_allows_loopback_http_issuer(tmp_path: Path, issuer: str) -> None:
    assert load(production(tmp_path, issuer=issuer), tmp_path=tmp_path).issuer == issuer


def test_production_refuses_plain_http_idps_and_signal_keys(tmp_path: Path) -> None:
    extra = ('[[idps]]\nid = "corp"\ntype = "oidc"\nissuer = "http://idp.example.com"\nclient_id = "x"\n'
             'client_secret = "a-real-secret-0123456789"\n'
             '[[signals.ssf_transmitters]]\nid = "okta"\nissuer = "https://acme.okta.com"\n'
             'jwks_uri = "http://acme.okta.com/keys"\n'
             '[[signals.logout_issuers]]\nid = "local"\nissuer = "https://l.example"\n'
             'jwks_uri = "http://127.0.0.1:9/keys"\n')
    found = problems(production(tmp_path, extra=extra), tmp_path=tmp_path)
    assert found == ["idps[0].issuer: production mode requires https (http is allowed only on loopback)",
                     "signals.ssf_transmitters[0].jwks_uri: production mode requires https (http is allowed only "
                     "on loopback)"]  # the loopback logout issuer is allowed


def test_dev_allows_http_issuer_and_test_idp(tmp_path: Path) -> None:
    text = ('mode = "dev"\nissuer = "http://dev.internal:8000"\n[testidp]\nenabled = true\n'
            '[[idps]]\nid = "test"\ntype = "test"\nissuer = "http://dev.internal:8000/testidp"\nclient_id = "x"\n')
    assert load(text, tmp_path=tmp_path).testidp.enabled


@pytest.mark.parametrize("kek", ["change-me", "CHANGE-ME"])
def test_production_refuses_placeholder_kek(tmp_path: Path, kek: str) -> None:
    text = f'mode = "production"\nissuer = "https://a.example"\n[keys]\nkey_encryption_key = "{kek}"\n'
    assert "keys.key_encryption_key: is a placeholder; generate one with `broker keys new-kek`" in problems(
        text, tmp_path=tmp_path)


def test_production_refuses_test_idp(tmp_path: Path) -> None:
    extra = ('[testidp]\nenabled = true\n[[idps]]\nid = "test"\ntype = "test"\n'
             'issuer = "https://auth.example.com/testidp"\nclient_id = "c"\nclient_secret = "s3cr3t-value"\n')
    found = problems(production(tmp_path, extra), tmp_path=tmp_path)
    assert "testidp.enabled: the built-in test IdP is refused in production mode" in found
    assert "idps[0].type: the test IdP is refused in production mode" in found


@pytest.mark.parametrize("secret_line", ['', 'client_secret = "change-me"'])
def test_production_refuses_missing_or_placeholder_idp_secret(tmp_path: Path, secret_line: str) -> None:
    extra = f'[[idps]]\nid = "okta"\ntype = "okta"\nissuer = "https://x.okta.com"\nclient_id = "c"\n{secret_line}\n'
    assert problems(production(tmp_path, extra), tmp_path=tmp_path) == [
        "idps[0].client_secret: missing or a placeholder in production mode"]


def test_every_problem_is_reported_at_once_with_its_key(tmp_path: Path) -> None:
    text = ('mode = "production"\nissuer = "https://a.example"\nbogus = 1\n'
            '[server]\nport = "eighty"\nworkers = 0\n[tokens]\naccess_token_lifetime = -5\n')
    found = problems(text, tmp_path=tmp_path)
    keys = sorted(p.split(":")[0] for p in found)
    assert keys == ["bogus", "server.port", "server.workers", "tokens.access_token_lifetime"]
    assert any(p.startswith("bogus: unknown key") for p in found)
    assert all("broker.toml" in p for p in found)


def test_unknown_nested_key_is_named(tmp_path: Path) -> None:
    assert problems(production(tmp_path, '[database]\nurll = "x"\n'), tmp_path=tmp_path) == [
        f"database.urll: unknown key (from {tmp_path / 'broker.toml'})"]


def test_malformed_toml_is_one_line_naming_the_file(tmp_path: Path) -> None:
    found = problems('issuer = "unterminated\n', tmp_path=tmp_path)
    assert len(found) == 1 and "not valid TOML" in found[0] and "broker.toml" in found[0]


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path / "nope.toml", env={})
    assert info.value.problems == [f"config file {tmp_path / 'nope.toml'}: not found"]


def test_environment_overrides_file_and_is_typed(tmp_path: Path) -> None:
    env = {"BROKER_SERVER__PORT": "9443", "BROKER_DATABASE__URL": "postgresql://db/broker",
           "BROKER_IDPS__0__CLIENT_SECRET": "from-env-secret", "BROKER_TOKENS__CLOCK_SKEW": "30"}
    extra = '[[idps]]\nid = "okta"\ntype = "okta"\nissuer = "https://x.okta.com"\nclient_id = "c"\n'
    settings = load(production(tmp_path, extra), env=env, tmp_path=tmp_path)
    assert settings.server.port == 9443
    assert settings.database_url == "postgresql://db/broker"
    assert settings.idps[0].client_secret.get_secret_value() == "from-env-secret"
    assert settings.tokens.clock_skew == 30


def test_environment_list_values_parse_as_toml_arrays() -> None:
    env = {"BROKER_MODE": "dev", "BROKER_ISSUER": "http://127.0.0.1:1", "BROKER_TESTIDP__ENABLED": "true",
           "BROKER_IDPS": '[{id = "t", type = "test", issuer = "http://127.0.0.1:1/testidp", client_id = "c"}]'}
    settings = config.load(None, env=env)
    assert settings.idps[0].id == "t"


def test_bad_environment_value_names_the_variable() -> None:
    env = {"BROKER_ISSUER": "https://a.example", "BROKER_KEYS__KEY_ENCRYPTION_KEY": KEK,
           "BROKER_SERVER__PORT": "many"}
    with pytest.raises(ConfigError) as info:
        config.load(None, env=env)
    assert info.value.problems == [
        "server.port: Input should be a valid integer, unable to parse string as an integer "
        "(from environment variable BROKER_SERVER__PORT)"]


def test_unknown_environment_key_is_refused() -> None:
    env = {"BROKER_ISSUER": "https://a.example", "BROKER_KEYS__KEY_ENCRYPTION_KEY": KEK, "BROKER_DATABSE__URL": "x"}
    with pytest.raises(ConfigError) as info:
        config.load(None, env=env)
    assert info.value.problems == ["databse: unknown key (from environment variable BROKER_DATABSE__URL)"]


def test_secret_from_file(tmp_path: Path) -> None:
    (tmp_path / "kek").write_text(KEK + "\n")
    text = ('mode = "production"\nissuer = "https://a.example"\n'
            f'[keys]\nkey_encryption_key_file = "{tmp_path / "kek"}"\n')
    assert load(text, tmp_path=tmp_path).key_encryption_key() == config.decode_kek(KEK)


def test_secret_file_missing_or_doubly_set(tmp_path: Path) -> None:
    text = production(tmp_path, "") + f'key_encryption_key_file = "{tmp_path / "absent"}"\n'
    assert problems(text, tmp_path=tmp_path) == [
        "keys.key_encryption_key: set either key_encryption_key or key_encryption_key_file, not both"]
    text = ('mode = "production"\nissuer = "https://a.example"\n'
            f'[keys]\nkey_encryption_key_file = "{tmp_path / "absent"}"\n')
    found = problems(text, tmp_path=tmp_path)
    assert found[0].startswith("keys.key_encryption_key_file: cannot read")
    assert "required in production mode" in found[1]


@pytest.mark.parametrize("kek", [KEK, config.decode_kek(KEK).hex(),
                                 __import__("base64").b64encode(config.decode_kek(KEK)).decode()])
def test_kek_accepts_base64url_base64_and_hex(kek: str) -> None:
    assert config.decode_kek(kek) == config.decode_kek(KEK)


@pytest.mark.parametrize("kek", ["short", "A" * 40, "!!!notbase64!!!"])
def test_kek_of_wrong_size_or_encoding_is_refused(tmp_path: Path, kek: str) -> None:
    text = f'mode = "dev"\nissuer = "http://127.0.0.1:8000"\n[keys]\nkey_encryption_key = "{kek}"\n'
    found = problems(text, tmp_path=tmp_path)
    assert len(found) == 1 and found[0].startswith("keys.key_encryption_key: must")


@pytest.mark.parametrize("issuer,message", [
    ("https://a.example/", "issuer: must not end with '/' (clients compare it byte for byte)"),
    ("https://a.example?x=1", "issuer: must not have a query or fragment (RFC 8414 §2)"),
    ("ftp://a.example", "issuer: 'ftp://a.example' is not an absolute http(s) URL"),
    ("", "issuer: required (the broker's public base URL, e.g. https://mcp-auth.example.com)"),
])
def test_issuer_shape(tmp_path: Path, issuer: str, message: str) -> None:
    text = f'mode = "dev"\nissuer = "{issuer}"\n'
    assert problems(text, tmp_path=tmp_path) == [message]


def test_defaults_sit_under_the_file_and_overrides_over_env(tmp_path: Path) -> None:
    defaults = {"mode": "dev", "issuer": "http://127.0.0.1:8000", "server": {"port": 1111}}
    settings = load('[server]\nport = 2222\n', env={"BROKER_SERVER__HOST": "0.0.0.0"}, tmp_path=tmp_path,
                    defaults=defaults, overrides={"data_dir": "/tmp/elsewhere"})
    assert (settings.server.port, settings.server.host) == (2222, "0.0.0.0")
    assert settings.data_dir == Path("/tmp/elsewhere")
    assert settings.database_url == "sqlite:////tmp/elsewhere/broker.db"


def test_refresh_lifetimes_must_be_ordered(tmp_path: Path) -> None:
    extra = "[tokens]\nrefresh_token_idle_lifetime = 9000\nrefresh_token_absolute_lifetime = 8000\n"
    assert problems(production(tmp_path, extra), tmp_path=tmp_path) == [
        "tokens.refresh_token_idle_lifetime: must not exceed tokens.refresh_token_absolute_lifetime"]


def test_secrets_are_masked_in_repr(tmp_path: Path) -> None:
    settings = load(production(tmp_path), tmp_path=tmp_path)
    assert KEK not in repr(settings) and KEK not in str(settings.model_dump())


def test_production_refuses_cimd_loopback(tmp_path: Path) -> None:
    assert problems(production(tmp_path, "[cimd]\nallow_loopback = true\n"), tmp_path=tmp_path) == [
        "cimd.allow_loopback: fetching client metadata from loopback is refused in production mode"]


def test_account_linking_names_configured_idps(tmp_path: Path) -> None:
    text = production(tmp_path, '[federation]\nlink_by_verified_email = ["okta"]\n')
    assert problems(text, tmp_path=tmp_path) == [
        "federation.link_by_verified_email: 'okta' is not a configured IdP id"]


@pytest.mark.parametrize("type_,issuer,extra,message", [
    ("okta", "https://acme.okta.com/oauth2/v1", "", "an Okta issuer is"),
    ("okta", "https://acme.okta.com/", "", "an Okta issuer is"),
    ("okta", "http://acme.okta.com", "", "okta issuers are https"),
    ("entra", "https://login.microsoftonline.com/acme/v2.0", "", "an Entra ID issuer is"),
    ("entra", "https://login.microsoftonline.com/organizations/v2.0", "", "needs the tenants allowed in"),
    ("entra", "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/v2.0",
     '[idps.entra]\nallowed_tenants = ["22222222-2222-2222-2222-222222222222"]\n', "only its own tenant"),
    ("entra", "https://login.microsoftonline.com/common/v2.0", '[idps.entra]\nallowed_tenants = ["acme"]\n',
     "is not a tenant id"),
])
def test_okta_and_entra_issuer_forms(tmp_path: Path, type_, issuer, extra, message) -> None:
    idp = (f'[[idps]]\nid = "x"\ntype = "{type_}"\nissuer = "{issuer}"\nclient_id = "c"\n'
           f'client_secret = "s3cr3t-value"\n{extra}')
    found = problems(production(tmp_path, idp), tmp_path=tmp_path)
    assert len(found) == 1 and message in found[0]


@pytest.mark.parametrize("type_,issuer", [
    ("okta", "https://acme.okta.com"), ("okta", "https://acme.okta.com/oauth2/default"),
    ("okta", "http://127.0.0.1:9000/oauth2/default"),
    ("entra", "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/v2.0"),
])
def test_valid_okta_and_entra_issuers(tmp_path: Path, type_, issuer) -> None:
    idp = (f'[[idps]]\nid = "x"\ntype = "{type_}"\nissuer = "{issuer}"\nclient_id = "c"\n'
           'client_secret = "s3cr3t-value"\n')
    assert load(production(tmp_path, idp), tmp_path=tmp_path).idps[0].issuer == issuer
