"""Reading a compact JWS before it is verified: header and claims as JSON objects, strictly base64url.

What is read here only chooses a key or refuses a token early; ``jwt.decode`` verifies the signature
and the claims afterwards. pyjwt's own reader (``jwt.get_unverified_header``) checks every character in
a Python loop (docs/decisions/0013-a-strict-fast-jws-header-reader.md).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from broker.params import load_json

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")  # RFC 7515 §2: the URL-safe alphabet, no padding


class MalformedJws(ValueError):
    """Not three base64url segments whose first two are JSON."""


class NotJsonObjects(MalformedJws):
    """The header or the claims are JSON, but not JSON objects."""


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact JWS, unverified; ``MalformedJws`` unless both are JSON objects."""
    encoded_header, encoded_claims, _ = _segments(token)
    return _object(encoded_header), _object(encoded_claims)


def unverified_header(token: str) -> dict[str, Any]:
    """The header of a compact JWS, unverified; ``MalformedJws`` unless it is a JSON object."""
    return _object(_segments(token)[0])


def _segments(token: str) -> list[str]:
    if not isinstance(token, str) or token.count(".") != 2:
        raise MalformedJws("not a compact JWS")
    return token.split(".")


def _object(segment: str) -> dict[str, Any]:
    if not _BASE64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise MalformedJws("not base64url")
    try:
        value = load_json(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError) as exc:  # JsonError is a ValueError: not UTF-8, not JSON, too deep
        raise MalformedJws("not base64url JSON") from exc
    if not isinstance(value, dict):
        raise NotJsonObjects("not a JSON object")
    return value
