"""The one way tests and the bench write a broker configuration file.

Settings are a dict shaped like the TOML file, checked against ``broker.config``'s models before they
are written (a misspelt key or a wrong type fails where the test builds it, not in a server's log),
then written as TOML. ``dev_settings`` holds the suite's defaults: dev mode, a fresh key-encryption key,
text logs, and the built-in test IdP as the upstream IdP with the users given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from broker import config

TESTIDP_CLIENT_ID = "broker"
TESTIDP_SECRET = "testidp-secret-0123456789"
ALICE = {"username": "alice", "password": "alice-pw", "email": "alice@example.com", "groups": ["engineering"]}
BOB = {"username": "bob", "password": "bob-pw", "email": "bob@example.com", "groups": ["sales"]}
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def with_testidp(issuer: str, users: Iterable[Mapping[str, Any]] = (ALICE,), clients: Iterable[Mapping[str, Any]] = (),
             **testidp: Any) -> dict[str, Any]:
    """The built-in test IdP at ``<issuer>/testidp`` with ``users``, as the broker's one upstream IdP
    (``clients``: more of its clients, e.g. agents getting ID-JAGs; ``testidp``: its other settings)."""
    broker_client = {"client_id": TESTIDP_CLIENT_ID, "client_secret": TESTIDP_SECRET,
                     "redirect_uris": [f"{issuer}/callback/test"]}
    return {"testidp": {"enabled": True, **testidp, "users": list(users), "clients": [broker_client, *clients]},
            "idps": [{"id": "test", "type": "test", "issuer": f"{issuer}/testidp", "client_id": TESTIDP_CLIENT_ID,
                      "client_secret": TESTIDP_SECRET}]}


def dev_settings(issuer: str, database_url: str | None = None, kek: str | None = None,
                 **sections: Any) -> dict[str, Any]:
    """Dev mode at ``issuer`` with text logs and a fresh KEK; ``sections`` merge over it (tables key by key)."""
    base: dict[str, Any] = {"mode": "dev", "issuer": issuer, "keys": {"key_encryption_key": kek or config.new_kek()},
                            "logging": {"format": "text"}}
    if database_url:
        base["database"] = {"url": database_url}
    return merged(base, sections)


def merged(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``: tables merge key by key, anything else (lists too) replaces."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merged(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) \
            else value
    return out


def write(path: Path, settings: Mapping[str, Any]) -> Path:
    """Check ``settings`` against the models (types and keys, not the cross-field rules) and write them."""
    config.Settings.model_validate(settings)
    path.write_text(toml(settings), encoding="utf-8")
    return path


def toml(settings: Mapping[str, Any]) -> str:
    """``settings`` as a TOML document (``tomllib.loads`` gives it back)."""
    return "\n".join(_table(settings, ())) + "\n"


def _table(table: Mapping[str, Any], path: tuple[str, ...]) -> list[str]:
    lines = [f"{_key(k)} = {_value(v)}" for k, v in table.items() if not _is_table(v) and not _is_tables(v)]
    for key, value in table.items():
        here = (*path, key)
        if _is_table(value):
            lines += ["", f"[{'.'.join(map(_key, here))}]", *_table(value, here)]
        elif _is_tables(value):
            for item in value:
                lines += ["", f"[[{'.'.join(map(_key, here))}]]", *_table(item, here)]
    return lines


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, Mapping) for item in value)


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")
