"""Where settings come from: defaults, a TOML file, ``BROKER_*`` environment variables, flags.

Each value remembers its origin so that a problem names the file or the variable at fault.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from broker.config.checks import check
from broker.config.models import Settings

ENV_PREFIX = "BROKER_"
# Environment variables read by the command line, not settings keys.
NON_SETTING_ENV = {"BROKER_CONFIG"}


class ConfigError(Exception):
    """One or more configuration problems; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build validated settings; raise ``ConfigError`` listing every problem.

    ``defaults`` sit under the file (``broker dev`` uses them), ``overrides`` over the
    environment (command-line flags such as ``--data-dir``).
    """
    env = os.environ if env is None else env
    origins: dict[str, str] = {}
    raw = _deep_copy(defaults or {})
    if path is not None:
        _merge(raw, _read_toml(path), origins, f"{path}")
    problems = _merge_env(raw, env, origins)
    _merge(raw, _deep_copy(overrides or {}), origins, "command line")
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(problems + _describe(exc, origins)) from None
    settings, file_problems = read_secret_files(settings)
    problems += file_problems + check(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
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


def _merge(base: dict[str, Any], update: Mapping[str, Any], origins: dict[str, str], origin: str,
           prefix: str = "") -> None:
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, origins, origin, dotted + ".")
        else:
            base[key] = _deep_copy(value)
            origins[dotted] = origin


def _merge_env(raw: dict[str, Any], env: Mapping[str, str], origins: dict[str, str]) -> list[str]:
    problems = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in NON_SETTING_ENV:
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        if not all(parts):
            problems.append(f"{name}: malformed name (parts are separated by a double underscore)")
            continue
        try:
            _set_path(raw, parts, _env_value(env[name]))
        except (KeyError, IndexError, TypeError):
            problems.append(f"{name}: {'.'.join(parts)} does not name a settings key")
            continue
        origins[_dotted(parts)] = f"environment variable {name}"
    return problems


def _env_value(text: str) -> Any:
    if text.startswith("["):
        try:
            return tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            return text
    return text


def _set_path(raw: dict[str, Any], parts: list[str], value: Any) -> None:
    node: Any = raw
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


def _dotted(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(exc: ValidationError, origins: Mapping[str, str]) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = _dotted(loc)
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        origin = _origin_of(loc, origins)
        lines.append(f"{key}: {msg}" + (f" (from {origin})" if origin else ""))
    return lines


def _origin_of(loc: tuple[Any, ...], origins: Mapping[str, str]) -> str | None:
    path = ".".join(str(p) for p in loc)
    below = [origin for key, origin in origins.items() if key.startswith(path + ".")]
    if below and path not in origins:
        return below[0]
    while path:
        if path in origins:
            return origins[path]
        path = path.rpartition(".")[0]
    return None


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
