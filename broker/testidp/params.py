"""Request parameters, parsed strictly: UTF-8 only, no duplicates, empty means absent.

RFC 6749 §3.1 and §3.2: parameters sent without a value are treated as omitted, and request
parameters MUST NOT be included more than once. Duplicates are recorded at parse time and
refused when read, so the authorization endpoint can first validate ``client_id`` and
``redirect_uri`` (an error page) and only then refuse the rest (a redirect to the client).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

from broker.testidp.errors import InvalidRequest

MAX_FIELDS = 64
MAX_VALUE_LENGTH = 4096
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class Params:
    """Named request parameters; reading a duplicated one raises ``InvalidRequest``."""

    def __init__(self, pairs: Iterable[tuple[str, str]]):
        self._values: dict[str, list[str]] = {}
        for name, value in pairs:
            if len(value) > MAX_VALUE_LENGTH:
                raise InvalidRequest(f"parameter {name!r} is too long")
            self._values.setdefault(name, []).append(value)

    @classmethod
    def from_query(cls, raw: bytes) -> Params:
        """Parse a raw URL query string (the bytes after ``?``)."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("the query string is not valid UTF-8") from None
        return cls(_parse(text))

    @classmethod
    def from_form(cls, body: bytes, content_type: str | None) -> Params:
        """Parse an ``application/x-www-form-urlencoded`` body (RFC 6749 §4.1.3, Appendix B)."""
        if _media_type(content_type) != FORM_CONTENT_TYPE:
            raise InvalidRequest(f"the request body must be {FORM_CONTENT_TYPE}")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("the request body is not valid UTF-8") from None
        return cls(_parse(text))

    def get(self, name: str) -> str | None:
        """The parameter's value, None when absent or empty (RFC 6749 §3.1)."""
        values = self._values.get(name, [])
        if len(values) > 1:
            raise InvalidRequest(f"parameter {name!r} is repeated")  # RFC 6749 §3.1
        return values[0] if values and values[0] else None

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise InvalidRequest(f"parameter {name!r} is required")
        return value

    def has(self, name: str) -> bool:
        return name in self._values

    def reject_duplicates(self) -> None:
        """RFC 6749 §3.1: request parameters MUST NOT be included more than once."""
        repeated = sorted(name for name, values in self._values.items() if len(values) > 1)
        if repeated:
            raise InvalidRequest(f"parameter {repeated[0]!r} is repeated")


def _parse(text: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict",
                         max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise InvalidRequest("a parameter is not valid percent-encoded UTF-8") from None
    except ValueError:
        raise InvalidRequest(f"more than {MAX_FIELDS} parameters") from None


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()
