"""Scope values the test IdP understands (RFC 6749 §3.3, OIDC Core §5.4, §11)."""

from __future__ import annotations

import re

from broker.testidp.errors import InvalidScope

OPENID = "openid"
OFFLINE_ACCESS = "offline_access"
SUPPORTED = ("openid", "email", "profile", "groups", "offline_access")
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")  # RFC 6749 §3.3 scope-token


def parse(raw: str) -> tuple[str, ...]:
    """Space-delimited scope tokens in request order, without repeats; unknown values are refused.

    Refusing (rather than ignoring, which OIDC Core §3.1.2.1 also allows) catches connector
    bugs early, as Okta does.
    """
    tokens = tuple(dict.fromkeys(t for t in raw.split(" ") if t))
    if not tokens or not all(_SCOPE_TOKEN.match(t) for t in tokens):
        raise InvalidScope("scope is not a space-delimited list of scope values")
    unknown = [t for t in tokens if t not in SUPPORTED]
    if unknown:
        raise InvalidScope(f"unsupported scope {unknown[0]!r}")
    return tokens


def require_openid(scope: tuple[str, ...]) -> None:
    if OPENID not in scope:
        raise InvalidScope("scope must include openid")  # OIDC Core §3.1.2.1: this is an OpenID provider
