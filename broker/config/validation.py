"""Strict validation that reports every problem at once, each with its key and where it came from.

Values are taken as written: a TOML string is not a boolean or a number. A refused value is left out
(its default applies; a list item missing something required is dropped) and the models are validated
again, so the cross-field checks still run on the rest; their findings about what was left out are
not repeated.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from broker.config.models import Settings
from broker.config.schema import Loc, slot

# Error types whose refused input is worth showing (never a secret: those are strings).
_SHOW_INPUT = {"bool_type": "must be true or false", "int_type": "must be an integer",
               "float_type": "must be a number", "int_from_float": "must be an integer"}


class ConfigError(Exception):
    """One or more configuration problems; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def dotted(loc: Loc) -> str:
    """``("idps", 0, "client_secret")`` -> ``idps[0].client_secret``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class Origins:
    """Which layer (a file, an environment variable, the command line) set each key path."""

    def __init__(self) -> None:
        self._by_key: dict[str, str] = {}

    def set(self, loc: Loc, origin: str) -> None:
        self._by_key[dotted(loc)] = origin

    def as_dict(self) -> dict[str, str]:
        """Every key set, dotted, with the layer that set it last."""
        return dict(self._by_key)

    def of(self, loc: Loc) -> str | None:
        """The origin of ``loc`` or of the nearest key above it; else of the first key set below it."""
        for depth in range(len(loc), 0, -1):
            if (found := self._by_key.get(dotted(loc[:depth]))) is not None:
                return found
        key = dotted(loc)
        return next((origin for name, origin in self._by_key.items() if name.startswith((key + ".", key + "["))),
                    None)


@dataclass
class Unchecked:
    """What validation left out, so that cross-field findings about it are not reported twice."""

    keys: set[str] = field(default_factory=set)
    idp_ids: set[str] = field(default_factory=set)  # ids declared by refused [[idps]] entries

    def keep(self, problems: list[str]) -> list[str]:
        return [p for p in problems if not any(_under(p.partition(": ")[0], key) for key in self.keys)]


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith((prefix + ".", prefix + "["))


def validate(raw: dict[str, Any], origins: Origins) -> tuple[Settings, list[str], Unchecked]:
    """Settings from ``raw`` with every refused value left out; the problems; what was left out."""
    problems: list[str] = []
    unchecked = Unchecked()
    for _ in range(8):  # each round drops what the last refused; nested refusals need a few
        try:
            return Settings.model_validate_json(json.dumps(_plain(raw)), strict=True), problems, unchecked
        except ValidationError as exc:
            errors = [(_loc(err), err) for err in exc.errors()]
        problems += [_describe(loc, err, origins) for loc, err in errors]
        for target in sorted({_droppable(loc) for loc, _ in errors}, key=_order, reverse=True):
            _drop(raw, target, unchecked)
    return Settings(), problems, unchecked  # not reached with the models as they are; defaults if it were


def _loc(err: Any) -> Loc:
    return tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))


def _describe(loc: Loc, err: Any, origins: Origins) -> str:
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] in _SHOW_INPUT:
        msg = f"{_SHOW_INPUT[err['type']]}, not {_shown(err['input'])}"
    else:
        msg = err["msg"]
    origin = origins.of(loc)
    return f"{dotted(loc)}: {msg}" + (f" (from {origin})" if origin else "")


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {json.dumps(value)}" if value.strip() else "an empty string"
    return json.dumps(value)


def _droppable(loc: Loc) -> Loc:
    """The deepest key at or above ``loc`` that can be left out: a field with a default, or a list item."""
    for depth in range(len(loc), 0, -1):
        here = loc[:depth]
        found = slot(here[:-1])
        if found is None:
            return here  # an unknown key: drop it
        inside = slot(here)
        if isinstance(here[-1], int) or inside is None or (inside.field_of_model and inside.optional):
            return here
    return loc


def _order(loc: Loc) -> list[tuple[int, int, str]]:
    return [(0, p, "") if isinstance(p, int) else (1, 0, p) for p in loc]


def _drop(raw: dict[str, Any], loc: Loc, unchecked: Unchecked) -> None:
    node: Any = raw
    for part in loc[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return
    last = loc[-1]
    if isinstance(node, list) and isinstance(last, int) and last < len(node):
        if loc[:-1] == ("idps",) and isinstance(node[last], dict) and isinstance(node[last].get("id"), str):
            unchecked.idp_ids.add(node[last]["id"])
        del node[last]
        unchecked.keys.add(dotted(loc[:-1]))  # later items moved up: findings about the list would misname them
    elif isinstance(node, dict) and last in node:
        del node[last]
        unchecked.keys.add(dotted(loc))


def _plain(value: Any) -> Any:
    """The raw settings as JSON values (validation reads them as JSON, where nothing is coerced)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path | Enum):
        return str(value.value if isinstance(value, Enum) else value)
    if isinstance(value, dt.date | dt.time):  # TOML dates and times: no setting takes one
        return value.isoformat()
    return value
