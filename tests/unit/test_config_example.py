"""config.example.toml documents every settings key, and is valid apart from its placeholders."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from broker import config

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
HEADER = re.compile(r"^(?:# )?\[\[?([a-z_.]+)\]\]?\s*$")  # commented-out tables document their keys too
KEY = re.compile(r"^(?:# )?([a-z_]+) = ")


def documented_keys() -> set[str]:
    section, keys = "", set()
    for line in EXAMPLE.read_text().splitlines():
        if m := HEADER.match(line):
            section = m.group(1) + "."
        elif m := KEY.match(line):
            keys.add(section + m.group(1))
    return keys


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        inner = field.annotation
        args = getattr(inner, "__args__", ())
        nested = next((a for a in (inner, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nested is not None:
            keys |= model_keys(nested, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_every_settings_key_is_documented() -> None:
    assert model_keys(config.Settings) - documented_keys() == set()


def test_example_documents_no_unknown_keys() -> None:
    assert documented_keys() - model_keys(config.Settings) == set()


def test_example_is_refused_only_for_its_placeholders() -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load(EXAMPLE, env={})
    assert sorted(info.value.problems) == [
        "idps[0].client_secret: missing or a placeholder in production mode",
        "keys.key_encryption_key: is a placeholder; generate one with `broker keys new-kek`",
    ]  # not scim.tokens[0].token: SCIM is off


def example_with_secrets() -> config.Settings:
    return config.load(EXAMPLE, env={"BROKER_KEYS__KEY_ENCRYPTION_KEY": config.new_kek(),
                                     "BROKER_IDPS__0__CLIENT_SECRET": "a-real-client-secret-0123456789"})


def test_the_copied_example_starts_once_its_secrets_are_set() -> None:
    assert example_with_secrets().idps[0].id == "okta"


def test_the_copied_example_trusts_no_third_party_and_enables_nothing_optional() -> None:
    settings = example_with_secrets()
    assert settings.signals.ssf_transmitters == [] and settings.signals.logout_issuers == []
    assert settings.id_jag.trusted_issuers == [] and settings.id_jag.audiences == []
    assert not (settings.scim.enabled or settings.registration.enabled or settings.metrics.enabled
                or settings.testidp.enabled)
    assert settings.admin.admin_groups == [] and settings.admin.security_groups == []


def uncommented_tables(text: str) -> str:
    """The example with its commented-out tables (a "# [[...]]" line and the keys after it) uncommented."""
    lines, inside = [], False
    for line in text.splitlines():
        inside = bool(re.match(r"^# \[\[[a-z_.]+\]\]$", line)) or (inside and bool(line.strip()))
        lines.append(re.sub(r"^# (\[\[|[a-z_]+ = )", r"\1", line) if inside else line)
    return "\n".join(lines)


def test_commented_out_examples_are_valid_when_uncommented() -> None:
    document = tomllib.loads(uncommented_tables(EXAMPLE.read_text()))
    assert document["signals"]["ssf_transmitters"][0]["id"] == "okta-ssf"
    settings = config.Settings.model_validate(document)
    assert settings.id_jag.audiences[0].resources == ["https://mcp.partner.example.com/mcp"]
    assert settings.id_jag.trusted_issuers[0].provision_users is False


PRODUCTION = EXAMPLE.parent / "examples" / "production.toml"


def test_minimal_production_config_asks_only_for_its_secrets() -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load(PRODUCTION, env={})
    assert [p.partition(":")[0] for p in info.value.problems] == ["keys.key_encryption_key", "idps[0].client_secret"]


def test_minimal_production_config_enables_nothing_unasked() -> None:
    settings = config.load(PRODUCTION, env={"BROKER_KEYS__KEY_ENCRYPTION_KEY": config.new_kek(),
                                            "BROKER_IDPS__0__CLIENT_SECRET": "a-real-client-secret-0123456789",
                                            "BROKER_DATABASE__URL": "postgresql://broker:pw@db.internal/broker"})
    assert settings.mode is config.Mode.PRODUCTION and [i.id for i in settings.idps] == ["corp"]
    assert not (settings.scim.enabled or settings.registration.enabled or settings.metrics.enabled
                or settings.testidp.enabled)
    assert settings.signals.ssf_transmitters == settings.signals.logout_issuers == []
    assert settings.id_jag.trusted_issuers == settings.id_jag.audiences == []
    assert settings.admin.admin_groups == settings.admin.security_groups == settings.admin.auditor_groups == []
