"""Where each effective setting came from, and whether it differs from the built-in default.

``load`` attaches the sources to the settings it returns (``attach``); ``entries`` lists every setting as
key, value, default and source, for the admin console's Settings page. Secrets are never shown: a secret
reads ``**********`` when set and nothing when not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined, to_jsonable_python

from broker.config.models import Settings
from broker.config.schema import Loc
from broker.config.validation import Origins, dotted

DEFAULT = "default"
DEV = "broker dev"  # the defaults ``broker dev`` (and a data directory it made) puts under the file
MASK = "**********"


@dataclass(frozen=True)
class Entry:
    key: str  # dotted, list items by index: ``idps[0].client_id``
    value: str  # as TOML would read it (JSON); secrets masked
    default: str  # the built-in default (a list item's field: the field's default); "" when there is none
    source: str  # "default", "broker dev", a file's path, "environment variable BROKER_...", "command line"
    secret: bool

    @property
    def differs(self) -> bool:
        return self.value != self.default


def attach(settings: Settings, origins: Origins, defaults: Mapping[str, Any] | None) -> None:
    """Record, on ``settings``, the layer that set each key: the file, environment and command line as
    ``origins`` has them, and under them the keys of ``defaults`` (``broker dev``'s)."""
    set_by = origins.as_dict()
    dev = {key: DEV for key in _leaf_keys(defaults or {}, ()) if not _covered(key, set_by)}
    settings._sources.update({**dev, **set_by})


def entries(settings: BaseModel) -> list[Entry]:
    """Every setting, in the order of the models, with its value, default and source."""
    sources: Mapping[str, str] = getattr(settings, "_sources", {})
    return [Entry(dotted(loc), value, default, _secret_source(dotted(loc), value, sources) if secret
                  else _source(dotted(loc), sources), secret)
            for loc, value, default, secret in _walk(settings, type(settings)(), ())]


def _secret_source(key: str, value: str, sources: Mapping[str, str]) -> str:
    """A secret read from the file its ``_file`` sibling names comes from there."""
    source = _source(key, sources)
    if value and source == DEFAULT and _source(f"{key}_file", sources) != DEFAULT:
        return f"the file named by {key}_file ({_source(f'{key}_file', sources)})"
    return source


def _walk(model: BaseModel, default: BaseModel | None, loc: Loc) -> Iterator[tuple[Loc, str, str, bool]]:
    for name, field in type(model).model_fields.items():
        value, here = getattr(model, name), (*loc, name)
        fallback = getattr(default, name) if default is not None else _field_default(field)
        if isinstance(value, BaseModel):
            yield from _walk(value, fallback if isinstance(fallback, BaseModel) else None, here)
        elif isinstance(value, list) and value and all(isinstance(item, BaseModel) for item in value):
            for index, item in enumerate(value):
                yield from _walk(item, None, (*here, index))
        else:
            secret = SecretStr in (field.annotation, *get_args(field.annotation))
            yield here, _shown(value, secret), "" if fallback is _NONE else _shown(fallback, secret), secret


_NONE = object()  # a required field: no default


def _field_default(field: Any) -> Any:
    value = field.get_default(call_default_factory=True)
    return _NONE if value is PydanticUndefined else value


def _shown(value: Any, secret: bool) -> str:
    if secret:
        return MASK if value is not None else ""
    return json.dumps(to_jsonable_python(value))


def _source(key: str, sources: Mapping[str, str]) -> str:
    """The layer that set ``key`` or the nearest key above it (a list set whole sets its items), else one that
    set a key inside it (a table of free keys)."""
    for prefix in _prefixes(key):
        if prefix in sources:
            return sources[prefix]
    inside = [origin for name, origin in sources.items() if name.startswith((key + ".", key + "["))]
    return inside[-1] if inside else DEFAULT


def _prefixes(key: str) -> list[str]:
    cuts = [i for i, ch in enumerate(key) if ch in ".["]
    return [key, *(key[:i] for i in reversed(cuts))]


def _covered(key: str, set_by: Mapping[str, str]) -> bool:
    return any(prefix in set_by for prefix in _prefixes(key))


def _leaf_keys(value: Any, loc: Loc) -> Iterator[str]:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from _leaf_keys(item, (*loc, key))
    elif isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        for index, item in enumerate(value):
            yield from _leaf_keys(item, (*loc, index))
    elif loc:
        yield dotted(loc)
