"""Classes of hostile input, and the check every hostile request must pass.

The classes: credentials that are not what their scheme says (not base64, not UTF-8 once decoded, NUL and
control characters, no separator, megabyte-ish, a JWT whose JSON nests thousands deep), JSON that nests
deeper than any parser's recursion, JSON of the wrong type in every field, and JWT claims of the wrong
JSON type. ``Watched`` collects what the broker logs while a request runs: a bad request may leave one
warning line, never a traceback.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

DEEP = 30_000  # far past any recursion limit
JUST_TOO_DEEP = 1_100  # past CPython's default recursion limit, small enough for a header


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def b64url(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def nested(depth: int, opening: str = "[", closing: str = "]") -> str:
    return opening * depth + closing * depth


def nested_objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def unsigned_jwt(header: str | bytes, payload: str | bytes) -> str:
    return f"{b64url(header)}.{b64url(payload)}.{b64url(b'signature')}"


# Authorization header values, as bytes on the wire (Starlette reads headers as latin-1, so any byte arrives).
AUTHORIZATION: dict[str, bytes] = {
    "Basic, not UTF-8 once decoded": b"Basic //46AA==",
    "Basic, raw high bytes": b"Basic \xff\xfe\xfd",
    "Basic, NUL in the client id": b"Basic " + b64(b"a\x00b:secret").encode(),
    "Basic, control characters": b"Basic " + b64(b"a\x1b[31m\r\nb:secret").encode(),
    "Basic, no colon": b"Basic " + b64(b"just-an-id").encode(),
    "Basic, empty id and secret": b"Basic " + b64(b":").encode(),
    "Basic, not base64": b"Basic ***not base64***",
    "Basic, padding only": b"Basic ====",
    "Basic, no value": b"Basic",
    "Basic, 6 KB": b"Basic " + b"QUFB" * 1536,
    "Basic, bad percent-encoding": b"Basic " + b64(b"%ff%00%zz:%e9").encode(),
    "Basic, Latin-1 id": b"Basic " + b64("caf\xe9:s\xe9cret".encode("latin-1")).encode(),
    "Bearer, high bytes": b"Bearer \xff\xfe\x80",
    "Bearer, control characters": b"Bearer a\x01b\x7fc",
    "Bearer, no value": b"Bearer",
    "Bearer, two values": b"Bearer a b",
    "Bearer, JWT header nested too deep": b"Bearer " + unsigned_jwt(nested(JUST_TOO_DEEP), "{}").encode(),
    "Bearer, JWT claims nested too deep": b"Bearer " + unsigned_jwt('{"alg":"ES256","typ":"at+jwt","kid":"k"}',
                                                                     nested_objects(JUST_TOO_DEEP)).encode(),
    "Bearer, JWT segments not UTF-8": b"Bearer " + unsigned_jwt(b"\xff\xfe{", b"\xc3\x28").encode(),
    "Bearer, JWT of JSON scalars": b"Bearer " + unsigned_jwt("1", "null").encode(),
    "Bearer, JWT with NaN and huge numbers": b"Bearer " + unsigned_jwt(
        '{"alg":"ES256","typ":"at+jwt","kid":"k"}', '{"exp":NaN,"iat":1e999,"nbf":-Infinity}').encode(),
    "DPoP scheme, high bytes": b"DPoP \xff\xfe",
    "unknown scheme": b"Negotiate \xff\x00",
    "only spaces": b"   ",
}
DPOP: dict[str, bytes] = {  # a DPoP proof header next to the request (RFC 9449), which the broker does not use
    "not a JWT": b"\xff\xfe",
    "JWT nested too deep": unsigned_jwt(nested(JUST_TOO_DEEP), "{}").encode(),
}
COOKIE: dict[str, bytes] = {
    "high bytes": b"broker-admin=\xff\xfe; broker-browser=\x80",
    "control characters": b"broker-admin=a\x01b; broker-browser=\x7f",
    "8 KB": b"broker-admin=" + b"A" * 8192,
    "unbalanced quotes": b'broker-admin="abc; broker-browser="',
}

# Path segments and query values, percent-encoded as they travel.
URL_VALUES: dict[str, str] = {
    "a NUL character": "a%00b",
    "not UTF-8": "%ff%fe",
    "control characters": "a%01%1b%0d%0ab",
    "a lone surrogate, CESU-encoded": "%ed%a0%80",
    "2 KB": "A" * 2048,
    "an integer past 64 bits": str(2**64),
    "dot segments": "..%2f..%2f",
}

# JSON request bodies (raw bytes) whatever the endpoint expects.
JSON_BODIES: dict[str, bytes] = {
    "arrays nested 30,000 deep": nested(DEEP).encode(),
    "objects nested 30,000 deep": nested_objects(DEEP).encode(),
    "arrays nested just past the recursion limit": nested(JUST_TOO_DEEP).encode(),
    "not UTF-8": b'{"name": "\xff\xfe"}',
    "UTF-16": '{"name": "x"}'.encode("utf-16"),
    "NaN and Infinity": b'{"a": NaN, "b": Infinity, "c": -Infinity}',
    "a number too large for a float": b'{"a": 1e999}',
    "a 5,000-digit integer": b'{"a": ' + b"9" * 5000 + b"}",
    "not JSON": b"{'single': quotes}",
    "truncated": b'{"a": [1, 2',
    "an array": b"[]",
    "a string": b'"x"',
    "a number": b"1",
    "null": b"null",
    "empty": b"",
    "duplicate keys": b'{"a": 1, "a": {"b": 2}}',
    "a lone surrogate": b'{"a": "\\ud800"}',
    "a NUL character": b'{"a": "x\\u0000y"}',
}
# What goes into one field in place of what the field should hold.
WRONG_TYPES: dict[str, Any] = {
    "integer": 5,
    "float": 1.5,
    "negative": -1,
    "an integer past 64 bits": 2**64,
    "true": True,
    "null": None,
    "empty string": "",
    "string": "x",
    "empty list": [],
    "list of an integer": [1],
    "list of an object": [{}],
    "list of null": [None],
    "list of a list": [["x"]],
    "object": {},
    "object of objects": {"a": {"b": {}}},
    "nested 200 deep": json.loads(nested(200)),
    "100 KB string": "x" * 100_000,
    "NUL in a string": "x\x00y",
}


@dataclass
class Watched:
    """Log records of one request: warnings and worse, and any that carry a traceback."""

    records: list[logging.LogRecord] = field(default_factory=list)

    @property
    def tracebacks(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()[:200]}" for r in self.records if r.exc_info or r.stack_info]

    @property
    def warnings(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()[:200]}" for r in self.records if r.levelno >= logging.WARNING]


class _Collect(logging.Handler):
    def __init__(self, into: Watched):
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING or record.exc_info:
            self.into.records.append(record)


@contextmanager
def watched_logs() -> Iterator[Watched]:
    """What the broker logs meanwhile (the root logger, whatever level the app set)."""
    seen = Watched()
    handler, root = _Collect(seen), logging.getLogger()
    root.addHandler(handler)
    try:
        yield seen
    finally:
        root.removeHandler(handler)


def verdict(status: int, seen: Watched) -> str | None:
    """None when a hostile request got a clean refusal: no 5xx, no traceback, one warning line at most."""
    if status >= 500:
        return f"status {status}"
    if seen.tracebacks:
        return f"traceback logged: {seen.tracebacks[0]}"
    if len(seen.warnings) > 1:
        return f"{len(seen.warnings)} warning lines: {seen.warnings[:3]}"
    return None


def json_type(value: Any) -> str:
    """The JSON type of a value (RFC 8259: an integer and a fraction are both numbers)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    return "number" if isinstance(value, int | float) else type(value).__name__


# Numbers of the right JSON type that no date can be (datetime holds years 1-9999).
OUT_OF_RANGE: dict[str, Any] = {"2**64": 2**64, "-2**64": -(2**64), "1e300": 1e300, "-1": -1}


def wrong_claims(claims: dict[str, Any], out_of_range: bool = False) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(claim, case, claims) with one claim at a time missing or in each wrong JSON type, and with
    ``out_of_range`` each numeric claim also past any date (``OUT_OF_RANGE``)."""
    for name, good in claims.items():
        yield name, "missing", {k: v for k, v in claims.items() if k != name}
        for case, value in WRONG_TYPES.items():
            if json_type(value) != json_type(good):
                yield name, case, {**claims, name: value}
        if out_of_range and json_type(good) == "number":
            for case, value in OUT_OF_RANGE.items():
                yield name, case, {**claims, name: value}


def signed(claims: dict[str, Any], key: Any, alg: str, headers: dict[str, Any]) -> str:
    """A JWS over ``claims`` exactly as given (pyjwt's encoder would refuse some shapes before signing)."""
    import jwt

    return jwt.api_jws.encode(json.dumps(claims).encode(), key, algorithm=alg, headers=headers)
