"""The admin API (``/admin/api/v1``): JSON operations for automation, authenticated by access tokens
that confidential clients get with client credentials for the resource ``<issuer>/admin/api``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from broker.lifecycle import offboarding
from broker.oauth.bearer import BearerError, Caller, authenticate
from broker.registry.servers import admin_api
from broker.storage.models import utcnow
from broker.web.deps import DbSession, State

router = APIRouter(prefix="/admin/api/v1", tags=["admin API"])

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, invalid, expired or revoked access token (WWW-Authenticate: Bearer)"},
    403: {"description": "The token lacks the scope this operation needs (insufficient_scope)"},
}


class RevokeBody(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, description="why (kept in the audit log)")


class RevokeResult(BaseModel):
    user_id: str
    families_revoked: int
    already_offboarded: bool
    not_before: str


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def require(scope: str) -> Any:
    def dependency(request: Request, state: State, session: DbSession) -> Caller:
        try:
            audience = admin_api(state.settings.issuer).resource
            return authenticate(session, state.oauth.server, _bearer(request), audience, scope, utcnow())
        except BearerError as exc:
            raise _challenge(exc) from None

    return dependency


class ApiError(Exception):
    def __init__(self, response: JSONResponse):
        self.response = response


def _challenge(exc: BearerError) -> ApiError:
    header = f'Bearer realm="mcp-auth-broker admin API", error="{exc.error}", scope="{exc.scope}"'
    return ApiError(JSONResponse({"error": exc.error, "error_description": exc.description},
                                 status_code=exc.status_code, headers={"www-authenticate": header,
                                                                       "cache-control": "no-store"}))


@router.post("/users/{user}/revoke", summary="Offboard a user everywhere (scope security:revoke)",
             response_model=RevokeResult,
             responses={**AUTH_ERRORS, 404: {"description": "No such user"}, 400: {"description": "Invalid body"}})
def revoke_user(user: str, body: RevokeBody, session: DbSession,
                caller: Annotated[Caller, Depends(require("security:revoke"))]) -> RevokeResult:
    try:
        target = offboarding.find_user(session, user)
    except offboarding.UnknownUser as exc:
        raise ApiError(JSONResponse({"error": "not_found", "error_description": str(exc)}, status_code=404)) from None
    result = offboarding.revoke_user(session, target, reason=body.reason, actor=f"client:{caller.client_id}",
                                     now=utcnow(), source="admin-api")
    return RevokeResult(user_id=result.user_id, families_revoked=result.families_revoked,
                        already_offboarded=result.already_offboarded, not_before=result.not_before.isoformat())
