"""tests/support/broker_config.py writes what broker.config reads back, and refuses what it would refuse."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pydantic
import pytest

from broker import config
from tests.support.broker_config import ALICE, dev_settings, merged, toml, with_testidp, write


def test_settings_round_trip_through_toml() -> None:
    settings = dev_settings("http://127.0.0.1:9", "sqlite:////tmp/x.db", testidp={"enabled": True, "users": [ALICE]},
                           idps=[{"id": "entra", "type": "entra", "issuer": "https://login.example/t/v2.0",
                                  "client_id": "c", "entra": {"group_names": {"0000-1": "eng", "a b": "x"}}}],
                           tokens={"clock_skew": 30}, server={"max_body_bytes": 2048},
                           database={"pool_timeout": 2.5}, registration={"enabled": True},
                           signals={"audience": 'quote " and \\ backslash'})
    assert tomllib.loads(toml(settings)) == settings


def test_written_settings_load(tmp_path: Path) -> None:
    path = write(tmp_path / "broker.toml", dev_settings("http://127.0.0.1:9", **with_testidp("http://127.0.0.1:9")))
    loaded = config.load(path, env={})
    assert loaded.testidp.users[0].username == ALICE["username"] and loaded.idps[0].id == "test"


def test_a_misspelt_key_fails_where_the_test_builds_it(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError):
        write(tmp_path / "broker.toml", dev_settings("http://127.0.0.1:9", tokens={"acess_token_lifetime": 60}))


def test_merged_tables_merge_and_lists_replace() -> None:
    assert merged({"a": {"x": 1, "y": [1]}, "b": 1}, {"a": {"y": [2]}, "c": 3}) == {"a": {"x": 1, "y": [2]}, "b": 1,
                                                                                     "c": 3}
