"""What the section models say about a key path: its type, and whether it may be left out.

``sources`` asks it how to read an environment variable and where a list item may be created;
``validation`` asks it what to drop when a value is refused, so the other checks still run.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, SecretStr

from broker.config.models import Settings

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Slot:
    """The place a key path names: its declared type, and whether it is a model's field with a default."""

    annotation: Any
    field_of_model: bool = False
    optional: bool = False


def slot(loc: Loc, root: type[BaseModel] = Settings) -> Slot | None:
    """The slot at ``loc`` below ``root``, or None when the models have no such key."""
    current = Slot(root)
    for part in loc:
        annotation = unwrap(current.annotation)
        if _is_model(annotation) and isinstance(part, str) and part in annotation.model_fields:
            field = annotation.model_fields[part]
            current = Slot(field.annotation, field_of_model=True, optional=not field.is_required())
        elif typing.get_origin(annotation) is list and isinstance(part, int):
            current = Slot(typing.get_args(annotation)[0])
        elif typing.get_origin(annotation) is dict and isinstance(part, str):
            current = Slot(typing.get_args(annotation)[1])
        else:
            return None
    return current


def unwrap(annotation: Any) -> Any:
    """The type under ``Annotated[...]`` and ``X | None``."""
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif typing.get_origin(annotation) in (Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        else:
            return annotation


def is_text(annotation: Any) -> bool:
    """Whether values of this type are written as plain text (strings, secrets, paths, names from a set)."""
    annotation = unwrap(annotation)
    if typing.get_origin(annotation) is Literal:
        return all(isinstance(a, str) for a in typing.get_args(annotation))
    return annotation in (str, SecretStr, Path) or (isinstance(annotation, type) and issubclass(annotation, Enum))


def is_list(annotation: Any) -> bool:
    return typing.get_origin(unwrap(annotation)) is list


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
