"""The revocation feed: what MCP servers that verify JWTs locally must stop accepting.

``GET /revocations?since=CURSOR`` answers, in commit order after the cursor: revoked token ids
(``jti``), revoked refresh-token families (``sid`` claims), and users' not-before times (``sub``:
tokens whose ``iat`` is earlier are dead; ``broker.oauth.cutoff`` makes that exact in whole seconds).
Callers authenticate as resource-server clients, like introspection.
"""

from __future__ import annotations

from typing import Any

from broker.oauth import cutoff
from broker.oauth.clients import SECRET_METHODS
from broker.oauth.errors import AccessDeniedError
from broker.oauth.request import HttpRequest
from broker.storage import grants
from broker.storage.models import Revocation

MAX_PAGE = 1000


def revocation_feed(server: Any, http: HttpRequest, cursor: int, limit: int) -> dict[str, Any]:
    """The next page of revocations; raises ``InvalidClientError``/``AccessDeniedError`` for a bad caller."""
    request = server.create_oauth2_request(http)
    client = server.authenticate_client(request, [*SECRET_METHODS, "private_key_jwt"], "introspection")
    if not client.row.may_introspect:
        raise AccessDeniedError("this client may not read the revocation feed", status_code=403)
    rows = grants.revocations_since(http.db, cursor, http.now, min(max(limit, 1), MAX_PAGE))
    return {"cursor": rows[-1].id if rows else cursor, "revocations": [_entry(r) for r in rows],
            "has_more": len(rows) == min(max(limit, 1), MAX_PAGE)}


def _entry(row: Revocation) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": row.kind, "at": int(row.created_at.timestamp())}
    if row.kind == "token":
        entry["jti"] = row.subject
    elif row.kind == "family":
        entry["sid"] = row.subject
    elif row.kind == "user":
        entry["sub"] = row.subject
        # tokens with an earlier iat are dead; whole seconds, exact by oauth.cutoff
        entry["not_before"] = cutoff.cutoff(row.not_before or row.created_at)
    elif row.kind == "client":
        entry["client_id"] = row.subject
    return entry
