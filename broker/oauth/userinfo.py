"""The UserInfo endpoint (OIDC Core §5.3): claims about the user a sign-in access token names.

A security checklist, in order (``bearer.authenticate`` runs the first four, as for the admin API):

1. a token this broker signed (typ ``at+jwt``, one of our published keys, unexpired; RFC 9068 §4), sent
   with the ``DPoP`` scheme and a proof by its key when it is DPoP-bound (RFC 9449 §7);
2. ``aud`` is exactly ``<issuer>/userinfo``: a token for an MCP server is refused (RFC 9068 §4);
3. still active by introspection's rules: ``jti`` not revoked, its client active, its refresh-token
   family live, its user active and not revoked since it was issued (every token for this audience
   comes from the code or refresh grant, so it has a family);
4. its scope holds ``openid`` (OIDC Core §5.3.1), else ``insufficient_scope``;
5. the user still exists and is active, read now.

The claims released follow the token's scopes (OIDC Core §5.4); ``sub`` is always there (§5.3.2).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from broker.oauth import oidc_claims
from broker.oauth.bearer import BearerError, DpopRequest, authenticate
from broker.registry import servers
from broker.storage import users
from broker.storage.enums import UserStatus

REQUIRED_SCOPE = "openid"


def userinfo(session: Session, server: Any, unverified_token: str | None, now: dt.datetime,
             dpop: DpopRequest | None = None) -> dict[str, Any]:
    """The UserInfo response for this access token (with its DPoP request, if any), or ``BearerError`` (RFC 6750
    §3.1, RFC 9449 §7.1)."""
    audience = servers.userinfo(server.issuer).resource
    caller = authenticate(session, server, unverified_token, audience, REQUIRED_SCOPE, now, dpop)
    user = users.get(session, caller.subject)
    if user is None or user.status != UserStatus.ACTIVE:
        raise BearerError("invalid_token", "the access token was revoked", 401, REQUIRED_SCOPE)
    return {"sub": user.id, **oidc_claims.user_claims(session, user, caller.scopes)}
