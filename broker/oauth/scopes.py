"""Scope strings (RFC 6749 §3.3) and the OpenID Connect scopes the broker accepts but does not grant
as MCP server scopes."""

from __future__ import annotations

import re
from collections.abc import Collection

from broker.oauth.errors import InvalidScopeError, describe

# Asked for by many clients; the broker decides about refresh tokens itself (MCP authorization).
META_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]+$")  # RFC 6749 §3.3 scope-token


def parse(raw: str | None) -> frozenset[str] | None:
    """The requested scopes without the meta scopes; None when the client asked for none."""
    if raw is None:
        return None
    tokens = raw.split(" ")
    if any(not _SCOPE_TOKEN.match(t) for t in tokens):
        raise InvalidScopeError(describe("the scope parameter is malformed"))
    wanted = frozenset(tokens) - META_SCOPES
    return wanted or None


def require_known(requested: frozenset[str] | None, known: Collection[str]) -> None:
    unknown = sorted((requested or frozenset()) - set(known))
    if unknown:
        raise InvalidScopeError(describe(f"unknown scope {unknown[0]!r} for this resource"))
