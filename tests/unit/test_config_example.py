"""config.example.toml documents every settings key, and is valid apart from its placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from broker import config

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
HEADER = re.compile(r"^\[\[?([a-z_.]+)\]\]?\s*$")
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
        "scim.tokens[0].token: missing or a placeholder (`broker keys new-kek` makes one)",
    ]
