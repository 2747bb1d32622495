"""Where settings come from: defaults, a TOML file, ``BROKER_*`` environment variables, flags.

Each value remembers its origin (``Origins``) so that a problem names the file or the variable at fault.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from broker.config import provenance
from broker.config.checks import check
from broker.config.models import Settings
from broker.config.schema import Loc, is_list, is_text, slot
from broker.config.validation import ConfigError, Origins, dotted, validate

ENV_PREFIX = "BROKER_"
# Environment variables read by the command line, not settings keys.
NON_SETTING_ENV = {"BROKER_CONFIG"}
# A file's [extend] table: lists under it are appended to the layers below instead of replacing them.
EXTEND = "extend"


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    finish: Callable[[dict[str, Any]], None] | None = None,
) -> Settings:
    """Build validated settings; raise ``ConfigError`` listing every problem.

    ``defaults`` sit under the file (``broker dev`` uses them), ``overrides`` over the
    environment (command-line flags such as ``--data-dir``). ``finish`` may adjust the merged
    values before they are validated (``broker dev`` drops defaults the file left dangling).
    """
    env = os.environ if env is None else env
    origins = Origins()
    raw = _deep_copy(defaults or {})
    problems: list[str] = []
    if path is not None:
        problems += merge_file(raw, read_file(path), origins, str(path))
    problems += _merge_env(raw, env, origins)
    _merge(raw, _deep_copy(overrides or {}), origins, "command line")
    if finish is not None:
        finish(raw)
    settings, found, unchecked = validate(raw, origins)
    settings, file_problems = read_secret_files(settings)
    problems += found + file_problems + unchecked.keep(check(settings, unchecked.idp_ids))
    if problems:
        raise ConfigError(problems)
    provenance.attach(settings, origins, defaults)
    return settings


def read_file(path: Path) -> dict[str, Any]:
    """A config file's TOML document; ``ConfigError`` (one line naming the file) when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"config file {path}: not found"]) from None
    except OSError as exc:
        raise ConfigError([f"config file {path}: cannot be read ({exc.strerror})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config file {path}: not valid TOML: {exc}"]) from None


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def merge_file(raw: dict[str, Any], document: dict[str, Any], origins: Origins, origin: str) -> list[str]:
    """Merge a TOML document over ``raw``: tables merge key by key, other values (lists too) replace,
    and every list under ``[extend]`` is appended to the list below it."""
    extend = document.pop(EXTEND, {})
    _merge(raw, document, origins, origin)
    if not isinstance(extend, dict):
        return [f"{EXTEND}: a table whose lists are added to the defaults' lists (from {origin})"]
    return _extend(raw, extend, origins, origin, ())


def _merge(base: dict[str, Any], update: Mapping[str, Any], origins: Origins, origin: str, loc: Loc = ()) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key, {}), dict):  # a table's origin is per key
            _merge(base.setdefault(key, {}), value, origins, origin, (*loc, key))
        else:
            base[key] = _deep_copy(value)
            origins.set((*loc, key), origin)


def _extend(raw: dict[str, Any], extend: Mapping[str, Any], origins: Origins, origin: str, loc: Loc) -> list[str]:
    problems = []
    for key, value in extend.items():
        here = (*loc, key)
        if isinstance(value, Mapping):
            problems += _extend(raw.setdefault(key, {}), value, origins, origin, here)
        elif isinstance(value, list) and (found := slot(here)) is not None and is_list(found.annotation):
            items = raw.setdefault(key, [])
            for item in value:
                origins.set((*here, len(items)), origin)
                items.append(_deep_copy(item))
        else:
            problems.append(f"{EXTEND}.{dotted(here)}: only lists of settings can be extended (from {origin})")
    return problems


def _env_names(env: Mapping[str, str]) -> list[tuple[str, Loc]]:
    """Settings variables and their key paths, list items in index order (BROKER_IDPS__2 before __10)."""
    found = []
    for name in env:
        if name.startswith(ENV_PREFIX) and name not in NON_SETTING_ENV:
            parts = name[len(ENV_PREFIX):].lower().split("__")
            found.append((name, tuple(int(p) if p.isdigit() else p for p in parts)))
    return sorted(found, key=lambda item: [(0, p, "") if isinstance(p, int) else (1, 0, p) for p in item[1]])


def _merge_env(raw: dict[str, Any], env: Mapping[str, str], origins: Origins) -> list[str]:
    problems = []
    for name, loc in _env_names(env):
        if "" in loc:
            problems.append(f"{name}: malformed name (parts are separated by a double underscore)")
            continue
        try:
            _set_path(raw, loc, env_value(env[name], loc), origins, f"environment variable {name}")
        except _PathError as exc:
            problems.append(f"{name}: {exc}")
    return problems


def env_value(text: str, loc: Loc) -> Any:
    """An environment variable's value as the key's type: text for text keys (verbatim), else a TOML value.

    ``true``, ``8080``, ``2.5``, ``["a", "b"]`` and ``{id = "okta"}`` are read as TOML; anything that
    is not valid TOML stays text, which validation then refuses for a non-text key (``on`` is no boolean).
    """
    found = slot(loc)
    if found is not None and is_text(found.annotation):
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


class _PathError(Exception):
    pass


def _set_path(raw: dict[str, Any], loc: Loc, value: Any, origins: Origins, origin: str) -> None:
    node: Any = raw
    for depth, part in enumerate(loc):
        last = depth == len(loc) - 1
        here = loc[: depth + 1]
        if isinstance(node, list):
            node = _list_item(node, part, here, last, value, origins, origin)
        elif isinstance(node, dict) and isinstance(part, str):
            if last:
                node[part] = value
            else:
                found = slot(here)
                node = node.setdefault(part, [] if found is not None and is_list(found.annotation) else {})
        else:
            raise _PathError(f"{dotted(loc)} does not name a settings key")
    origins.set(loc, origin)


def _list_item(items: list[Any], part: Any, here: Loc, last: bool, value: Any, origins: Origins, origin: str) -> Any:
    if not isinstance(part, int):
        raise _PathError(f"{dotted(here[:-1])} is a list: name an item by its index ({dotted(here[:-1])}[0])")
    if part > len(items):
        raise _PathError(f"{dotted(here)} cannot be declared before {dotted((*here[:-1], len(items)))} "
                         f"(items are numbered from 0 without gaps; the layers below declare {len(items)})")
    if part == len(items):
        items.append(None if last else {})
        origins.set(here, origin)
    if last:
        items[part] = value
    return items[part]


def read_secret_files(settings: Settings) -> tuple[Settings, list[str]]:
    """Replace each secret ``X`` by the contents of the file named by ``X_file``, wherever that is set."""
    problems: list[str] = []
    return _resolve_secrets(settings, "", problems), problems


def _resolve_secrets(model: BaseModel, key: str, problems: list[str]) -> Any:
    updates: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        where = f"{key}.{name}" if key else name
        if isinstance(value, BaseModel):
            updates[name] = _resolve_secrets(value, where, problems)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            updates[name] = [_resolve_secrets(item, f"{where}[{i}]", problems) for i, item in enumerate(value)]
        elif name.endswith("_file") and name[:-5] in type(model).model_fields and value is not None:
            secret = _read_secret_file(model, key, name[:-5], value, problems)
            if secret is not None:
                updates[name[:-5]] = secret
    return model.model_copy(update=updates) if updates else model


def _read_secret_file(model: BaseModel, key: str, field: str, file: Path, problems: list[str]) -> SecretStr | None:
    where = f"{key}.{field}" if key else field
    if getattr(model, field) is not None:
        problems.append(f"{where}: set either {field} or {field}_file, not both")
        return None
    try:
        return SecretStr(Path(file).read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{where}_file: cannot read {file} ({getattr(exc, 'strerror', exc)})")
        return None


