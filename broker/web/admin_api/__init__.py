"""The admin API (``/admin/api/v1``): JSON operations for automation, authenticated by access tokens
that confidential clients get with client credentials for the resource ``<issuer>/admin/api``.

Scopes: ``admin:read`` (look), ``admin:write`` (change servers, clients, policy, keys),
``security:revoke`` (offboard and restore users). Every operation calls the same service function
as the CLI and the console, with the actor ``client:<client_id>``; a refused request rolls back.
Documented in docs/admin-api.md.
"""

from __future__ import annotations

from fastapi import APIRouter

from broker.web.admin_api import access, clients, policy, servers, system, users
from broker.web.admin_api.common import AUTH_ERRORS, ApiError, require

router = APIRouter(prefix="/admin/api/v1", tags=["admin API"])
for _part in (servers, clients, users, policy, access, system):
    router.include_router(_part.router)

__all__ = ["AUTH_ERRORS", "ApiError", "require", "router"]
