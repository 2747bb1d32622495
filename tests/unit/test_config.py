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


def test_production_with_several_idps_names_those_that_give_console_roles(tmp_path: Path) -> None:
    idps = "".join(f'[[idps]]\nid = "{name}"\ntype = "oidc"\nissuer = "https://{name}.example.com"\n'
                   f'client_id = "x"\nclient_secret = "{KEK}"\n' for name in ("corp", "auditors"))
    groups = '[admin]\nadmin_groups = ["it-admins"]\n'
    found = problems(production(tmp_path, groups + idps), tmp_path=tmp_path)
    assert found == ["admin.idps: several IdPs are configured; name those whose groups give console roles "
                     "(another IdP could send a group of the same name)"]
    named = load(production(tmp_path, groups + 'idps = ["corp"]\n' + idps), tmp_path=tmp_path)
    assert named.admin.idps == ["corp"]
    assert problems(production(tmp_path, groups + 'idps = ["nope"]\n' + idps), tmp_path=tmp_path) == [
        "admin.idps: 'nope' is not a configured IdP id"]
    assert load(production(tmp_path, idps), tmp_path=tmp_path).admin.idps == []  # no console groups: no question


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
    assert keys == ["bogus", "keys.key_encryption_key", "server.port", "server.workers",
                    "tokens.access_token_lifetime"]  # type errors and cross-field checks together
    assert any(p.startswith("bogus: unknown key") for p in found)
    assert all("broker.toml" in p for p in found if not p.startswith("keys."))


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
        'server.port: must be an integer, not the string "many" (from environment variable BROKER_SERVER__PORT)']


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
                                 __import__("base64").b64encode(config.decode_kek(KEK)).decode()],
                         ids=["base64url", "hex", "base64"])  # fixed ids: a random key would differ per process
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


# ---------------------------------------------------------------- strict values, every problem at once


@pytest.mark.parametrize("extra,message", [
    ('[registration]\nenabled = "on"\n', 'registration.enabled: must be true or false, not the string "on"'),
    ('[server]\nport = "8080"\n', 'server.port: must be an integer, not the string "8080"'),
    ('[database]\npool_timeout = "5"\n', 'database.pool_timeout: must be a number, not the string "5"'),
    ('[metrics]\nenabled = 1\n', "metrics.enabled: must be true or false, not 1"),
])
def test_strings_and_numbers_are_not_coerced(tmp_path: Path, extra: str, message: str) -> None:
    assert problems(production(tmp_path, extra), tmp_path=tmp_path) == [
        f"{message} (from {tmp_path / 'broker.toml'})"]


def test_an_integer_is_a_number(tmp_path: Path) -> None:
    assert load(production(tmp_path, "[database]\npool_timeout = 7\n"), tmp_path=tmp_path).database.pool_timeout == 7.0


@pytest.mark.parametrize("level", ["info", "Debug", "WARNING", "error"])
def test_log_levels_in_any_case(tmp_path: Path, level: str) -> None:
    settings = load(production(tmp_path, f'[logging]\nlevel = "{level}"\n'), tmp_path=tmp_path)
    assert settings.logging.level == level.upper()


def test_type_errors_and_cross_field_checks_are_reported_together(tmp_path: Path) -> None:
    text = ('mode = "production"\nissuer = "http://auth.example.com"\n[server]\nport = "8080"\n'
            "[tokens]\nrefresh_token_idle_lifetime = 9000\nrefresh_token_absolute_lifetime = 8000\n")
    assert sorted(p.split(" (from")[0] for p in problems(text, tmp_path=tmp_path)) == [
        "issuer: production mode requires https (http is allowed only on loopback)",
        "keys.key_encryption_key: required in production mode (set BROKER_KEYS__KEY_ENCRYPTION_KEY or "
        "keys.key_encryption_key_file; `broker keys new-kek` prints a fresh one)",
        'server.port: must be an integer, not the string "8080"',
        "tokens.refresh_token_idle_lifetime: must not exceed tokens.refresh_token_absolute_lifetime",
    ]


def test_a_refused_value_is_reported_once(tmp_path: Path) -> None:
    # the refused issuer and IdP entry are not reported again as "required" or "not a configured IdP id"
    extra = ('[[idps]]\nid = "okta"\ntype = "okta-ish"\nissuer = "https://x.okta.com"\nclient_id = "c"\n'
             '[scim]\nenabled = true\n[[scim.tokens]]\nidp = "okta"\ntoken = "' + "t" * 40 + '"\n')
    text = production(tmp_path, extra).replace('issuer = "https://auth.example.com"', "issuer = 5")
    found = [p.split(" (from")[0] for p in problems(text, tmp_path=tmp_path)]
    assert found == ["issuer: Input should be a valid string",
                     "idps[0].type: Input should be 'oidc', 'okta', 'entra' or 'test'"]


# ---------------------------------------------------------------- environment variables


def test_environment_values_are_typed_strictly() -> None:
    base = {"BROKER_ISSUER": "https://a.example", "BROKER_KEYS__KEY_ENCRYPTION_KEY": KEK}
    settings = config.load(None, env={**base, "BROKER_REGISTRATION__ENABLED": "true", "BROKER_SERVER__PORT": "8443",
                                      "BROKER_DATABASE__POOL_TIMEOUT": "2.5", "BROKER_LOGGING__LEVEL": "debug",
                                      "BROKER_CIMD__ALLOWED_HOSTS": '["a.example", "b.example"]'})
    assert settings.registration.enabled is True and settings.server.port == 8443
    assert settings.database.pool_timeout == 2.5 and settings.logging.level == "DEBUG"
    assert settings.cimd.allowed_hosts == ["a.example", "b.example"]
    with pytest.raises(ConfigError) as info:
        config.load(None, env={**base, "BROKER_REGISTRATION__ENABLED": "on", "BROKER_SERVER__PORT": '"8443"'})
    assert info.value.problems == [
        'registration.enabled: must be true or false, not the string "on" '
        "(from environment variable BROKER_REGISTRATION__ENABLED)",
        'server.port: must be an integer, not the string "8443" (from environment variable BROKER_SERVER__PORT)']


def test_text_settings_take_environment_values_verbatim() -> None:
    env = {"BROKER_ISSUER": "https://a.example", "BROKER_KEYS__KEY_ENCRYPTION_KEY": KEK,
           "BROKER_SERVER__FORWARDED_ALLOW_IPS": "10.0.0.1,10.0.0.2", "BROKER_SIGNALS__AUDIENCE": "12345",
           "BROKER_SERVER__HOST": "true"}
    settings = config.load(None, env=env)
    assert settings.server.forwarded_allow_ips == "10.0.0.1,10.0.0.2"
    assert (settings.signals.audience, settings.server.host) == ("12345", "true")


def test_environment_naming_an_undeclared_idp_names_the_variable() -> None:
    env = {"BROKER_ISSUER": "https://a.example", "BROKER_KEYS__KEY_ENCRYPTION_KEY": KEK,
           "BROKER_IDPS__0__CLIENT_SECRET": "x"}
    with pytest.raises(ConfigError) as info:
        config.load(None, env=env)
    origin = "(from environment variable BROKER_IDPS__0__CLIENT_SECRET)"
    assert info.value.problems == [f"idps[0].{key}: Field required {origin}" for key in
                                   ("id", "type", "issuer", "client_id")]


def test_idps_can_be_declared_by_environment_alone() -> None:
    env = {"BROKER_ISSUER": "https://a.example", "BROKER_KEYS__KEY_ENCRYPTION_KEY": KEK,
           "BROKER_IDPS__0__ID": "okta", "BROKER_IDPS__0__TYPE": "okta", "BROKER_IDPS__0__ISSUER": "https://x.okta.com",
           "BROKER_IDPS__0__CLIENT_ID": "0oa1", "BROKER_IDPS__0__CLIENT_SECRET": "a-real-secret-0123456789",
           "BROKER_IDPS__0__EMAIL_DOMAINS": '["example.com"]',
           "BROKER_IDPS__1__ID": "entra", "BROKER_IDPS__1__TYPE": "entra", "BROKER_IDPS__1__CLIENT_ID": "app",
           "BROKER_IDPS__1__ISSUER": "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/v2.0",
           "BROKER_IDPS__1__CLIENT_SECRET": "another-real-secret-0123", "BROKER_IDPS__1__ENTRA__GRAPH_ENDPOINT":
           "https://graph.example"}
    settings = config.load(None, env=env)
    assert [(i.id, i.type, i.client_id) for i in settings.idps] == [("okta", "okta", "0oa1"), ("entra", "entra", "app")]
    assert settings.idps[0].email_domains == ["example.com"]
    assert settings.idps[1].entra.graph_endpoint == "https://graph.example"
    assert settings.idps[0].client_secret.get_secret_value() == "a-real-secret-0123456789"


def test_environment_list_items_are_numbered_without_gaps(tmp_path: Path) -> None:
    extra = ('[[idps]]\nid = "okta"\ntype = "okta"\nissuer = "https://x.okta.com"\nclient_id = "c"\n'
             'client_secret = "s3cr3t"\n')
    found = problems(production(tmp_path, extra), env={"BROKER_IDPS__2__ID": "late"}, tmp_path=tmp_path)
    assert found == ["BROKER_IDPS__2__ID: idps[2] cannot be declared before idps[1] "
                     "(items are numbered from 0 without gaps; the layers below declare 1)"]


def test_environment_overrides_one_key_of_a_file_list_item(tmp_path: Path) -> None:
    extra = '[[idps]]\nid = "okta"\ntype = "okta"\nissuer = "https://x.okta.com"\nclient_id = "c"\n'
    settings = load(production(tmp_path, extra), env={"BROKER_IDPS__0__SCOPES": '["openid", "groups"]',
                                                       "BROKER_IDPS__0__CLIENT_SECRET": "from-env-secret"},
                    tmp_path=tmp_path)
    assert settings.idps[0].scopes == ["openid", "groups"] and settings.idps[0].id == "okta"


# ---------------------------------------------------------------- [extend]: adding to the defaults' lists


def test_a_file_list_replaces_the_defaults_list_and_extend_adds_to_it(tmp_path: Path) -> None:
    defaults = {"mode": "dev", "issuer": "http://127.0.0.1:8000",
                "cimd": {"allowed_hosts": ["a.example"]}, "admin": {"admin_groups": ["it-admins"]}}
    text = ('[admin]\nadmin_groups = ["ops"]\n[extend.cimd]\nallowed_hosts = ["b.example"]\n')
    settings = load(text, tmp_path=tmp_path, defaults=defaults)
    assert settings.admin.admin_groups == ["ops"]
    assert settings.cimd.allowed_hosts == ["a.example", "b.example"]


def test_extend_adds_list_items_with_their_origin(tmp_path: Path) -> None:
    defaults = {"mode": "dev", "issuer": "http://127.0.0.1:8000", "testidp": {"enabled": True, "clients": [
        {"client_id": "one", "client_secret": "s", "redirect_uris": ["http://127.0.0.1/cb"]}]}}
    text = '[[extend.testidp.clients]]\nclient_id = "two"\nclient_secret = "s"\n'
    found = problems(text, tmp_path=tmp_path, defaults=defaults)
    assert found == [f"testidp.clients[1].redirect_uris: Field required (from {tmp_path / 'broker.toml'})"]
    text += 'redirect_uris = ["http://127.0.0.1/cb2"]\n'
    assert [c.client_id for c in load(text, tmp_path=tmp_path, defaults=defaults).testidp.clients] == ["one", "two"]


def test_extend_refuses_what_is_not_a_list(tmp_path: Path) -> None:
    found = problems(production(tmp_path, '[extend.server]\nport = 1\n'), tmp_path=tmp_path)
    assert found == [f"extend.server.port: only lists of settings can be extended (from {tmp_path / 'broker.toml'})"]


# ---------------------------------------------------------------- sections that are off


def test_a_disabled_section_needs_no_secrets(tmp_path: Path) -> None:
    extra = ('[[idps]]\nid = "okta"\ntype = "okta"\nissuer = "https://x.okta.com"\nclient_id = "c"\n'
             'client_secret = "s3cr3t-value"\n[scim]\nenabled = false\n[[scim.tokens]]\nidp = "okta"\n'
             'token = "change-me"\n[metrics]\nenabled = false\nbearer_token = "short"\n')
    assert load(production(tmp_path, extra), tmp_path=tmp_path).scim.tokens[0].idp == "okta"
    found = problems(production(tmp_path, extra.replace("enabled = false", "enabled = true")), tmp_path=tmp_path)
    assert found == ["scim.tokens[0].token: missing or a placeholder (`broker keys new-kek` makes one)",
                     "metrics.bearer_token: at least 32 random characters (`broker keys new-kek` makes one)"]


def test_previous_key_encryption_keys_decrypt_behind_the_current_one(tmp_path: Path) -> None:
    old, older = config.new_kek(), config.new_kek().encode().hex()[:64]
    settings = load(production(tmp_path), tmp_path=tmp_path,
                    env={"BROKER_KEYS__PREVIOUS_KEY_ENCRYPTION_KEYS": f"{old}, {older}"})
    assert settings.key_encryption_keys() == [config.decode_kek(KEK), config.decode_kek(old),
                                              config.decode_kek(older)]
    (tmp_path / "previous").write_text(f"{old}\n")
    from_file = load(production(tmp_path, f'previous_key_encryption_keys_file = "{tmp_path / "previous"}"\n'),
                     tmp_path=tmp_path)
    assert from_file.key_encryption_keys()[1:] == [config.decode_kek(old)]


def test_a_bad_previous_key_encryption_key_is_named(tmp_path: Path) -> None:
    found = problems(production(tmp_path, f'previous_key_encryption_keys = "c2hvcnQ,{KEK}"\n'), tmp_path=tmp_path)
    assert found == ["keys.previous_key_encryption_keys[0]: must decode to 32 bytes, not 5",
                     "keys.previous_key_encryption_keys[1]: is the current key_encryption_key"]
