"""Request parameters, parsed strictly: UTF-8 only, no duplicates, empty means absent.

Shared by the protocol cores (``broker.oauth``, ``broker.testidp``); each subclasses ``RequestParams``
to raise its own ``invalid_request`` error class.

RFC 6749 §3.1 and §3.2: parameters sent without a value are treated as omitted, and request
parameters MUST NOT be included more than once. Duplicates are recorded at parse time and
refused when read, so the authorization endpoint can first validate ``client_id`` and
``redirect_uri`` (an error page) and only then refuse the rest (a redirect to the client).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any, Self
from urllib.parse import parse_qsl

MAX_FIELDS = 64
MAX_VALUE_LENGTH = 4096
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class ParameterError(ValueError):
    """A malformed or repeated parameter (the default ``RequestParams.error``)."""


class RequestParams:
    """Named request parameters; reading a duplicated one raises ``self.error``."""

    error: type[Exception] = ParameterError

    def __init__(self, pairs: Iterable[tuple[str, str]]):
        self._values: dict[str, list[str]] = {}
        self._nul: set[str] = set()
        for name, value in pairs:
            if len(value) > MAX_VALUE_LENGTH:
                raise self.error(f"parameter {name!r} is too long")
            if "\x00" in value:  # RFC 6749 Appendix A: no parameter may hold one; PostgreSQL text cannot store one
                self._nul.add(name)
            self._values.setdefault(name, []).append(value)

    @classmethod
    def from_query(cls, raw: bytes) -> Self:
        """Parse a raw URL query string (the bytes after ``?``)."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise cls.error("the query string is not valid UTF-8") from None
        return cls(_parse(text, cls.error))

    @classmethod
    def from_form(cls, body: bytes, content_type: str | None) -> Self:
        """Parse an ``application/x-www-form-urlencoded`` body (RFC 6749 §4.1.3, Appendix B)."""
        if _media_type(content_type) != FORM_CONTENT_TYPE:
            raise cls.error(f"the request body must be {FORM_CONTENT_TYPE}")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise cls.error("the request body is not valid UTF-8") from None
        return cls(_parse(text, cls.error))

    def get(self, name: str) -> str | None:
        """The parameter's value, None when absent or empty (RFC 6749 §3.1)."""
        values = self._values.get(name, [])
        if len(values) > 1:
            raise self.error(f"parameter {name!r} is repeated")  # RFC 6749 §3.1
        if name in self._nul:
            raise self.error(f"parameter {name!r} contains a NUL character")
        return values[0] if values and values[0] else None

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise self.error(f"parameter {name!r} is required")
        return value

    def get_all(self, name: str) -> list[str]:
        """Every non-empty value of a parameter that may legitimately repeat."""
        if name in self._nul:
            raise self.error(f"parameter {name!r} contains a NUL character")
        return [v for v in self._values.get(name, []) if v]

    def as_dict(self) -> dict[str, str]:
        """Every non-empty parameter with its value; raises if any parameter is repeated."""
        self.reject_duplicates()
        return {name: values[0] for name, values in self._values.items() if values[0]}

    def has(self, name: str) -> bool:
        return name in self._values

    def reject_duplicates(self) -> None:
        """RFC 6749 §3.1: request parameters MUST NOT be included more than once."""
        repeated = sorted(name for name, values in self._values.items() if len(values) > 1)
        if repeated:
            raise self.error(f"parameter {repeated[0]!r} is repeated")
        if self._nul:
            raise self.error(f"parameter {sorted(self._nul)[0]!r} contains a NUL character")


def _parse(text: str, error: type[Exception]) -> list[tuple[str, str]]:
    try:
        return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict",
                         max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise error("a parameter is not valid percent-encoded UTF-8") from None
    except ValueError:
        raise error(f"more than {MAX_FIELDS} parameters") from None


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


# ---------------------------------------------------------------- JSON from requests (bodies, JWT segments)

MAX_JSON_DEPTH = 32  # nothing the broker reads nests deeper; deeper input only costs recursion


class JsonError(ValueError):
    """Request JSON that is not UTF-8, not JSON, holds NaN, an infinite number or a NUL character (which no
    parameter may hold and PostgreSQL cannot store), or nests too deep."""


def load_json(raw: bytes | str) -> Any:
    """Parse JSON from a request strictly (RFC 8259): ``JsonError`` rather than a crash, whatever the input."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise JsonError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, digits past int's limit, NaN
        raise JsonError(f"not valid JSON ({type(exc).__name__})") from None
    _check_shape(value, MAX_JSON_DEPTH)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("a number too large for a float")
    return number


def _check_shape(value: Any, limit: int) -> None:
    """No container deeper than ``limit``, no NUL in a string or a key (level by level: no recursion)."""
    level: list[Any] = [value]  # the values at depth 1, then 2, ...
    for _ in range(limit + 1):
        if any(isinstance(item, str) and "\x00" in item for item in level):
            raise JsonError("a JSON string holds a NUL character")
        containers = [item for item in level if isinstance(item, dict | list)]
        if not containers:
            return
        level = [part for item in containers
                 for part in ([*item.keys(), *item.values()] if isinstance(item, dict) else item)]
    raise JsonError(f"JSON nested deeper than {limit} levels")
