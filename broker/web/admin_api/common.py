"""What every admin API route shares: bearer authentication by scope, JSON errors, and their OpenAPI entries."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, model_validator

from broker.oauth.bearer import BearerError, Caller, authenticate
from broker.registry.servers import admin_api
from broker.storage.models import utcnow
from broker.web.credentials import presented, with_dpop_challenge
from broker.web.deps import State
from broker.web.headers import NO_STORE
from broker.web.state import BrokerState

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing, invalid, expired or revoked access token (WWW-Authenticate: Bearer), a DPoP-bound "
                         "token sent as Bearer, or a bad DPoP proof (WWW-Authenticate: DPoP, "
                         "error=\"invalid_dpop_proof\")"},
    403: {"description": "The token lacks the scope this operation needs (insufficient_scope)"},
}
BAD_BODY: dict[int | str, dict[str, Any]] = {
    400: {"description": "invalid_request: the body or a parameter is invalid (every problem is listed)"},
    413: {"description": "Request body too large"}}


def errors(**codes: str) -> dict[int | str, dict[str, Any]]:
    """``AUTH_ERRORS`` plus the given ``responses=`` entries, e.g. ``errors(e404="No such server")``."""
    out = dict(AUTH_ERRORS)
    for key, description in codes.items():
        out[int(key[1:])] = {"description": description}
    return out


class Body(BaseModel):
    """Request bodies refuse unknown fields (a typo is a 400, not a silently ignored setting) and NUL
    characters in any string (PostgreSQL text cannot hold one; both stores refuse the same bodies)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if _holds_nul(data):
            raise ValueError("a string contains a NUL character")
        return data


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    return isinstance(value, list) and any(_holds_nul(item) for item in value)


class ApiError(Exception):
    def __init__(self, response: JSONResponse):
        self.response = response


def fail(status: int, error: str, description: str, **extra: Any) -> ApiError:
    """An error response; the request's transaction rolls back, so nothing it did stays."""
    return ApiError(JSONResponse({"error": error, "error_description": description, **extra},
                                 status_code=status, headers=NO_STORE))


def not_found(description: str) -> ApiError:
    return fail(404, "not_found", description)


def require(scope: str) -> Any:
    async def dependency(request: Request, state: State) -> Caller:
        audience = admin_api(state.settings.issuer).resource
        token, dpop = presented(request, state.settings.issuer)
        try:
            return await state.database.cold(authenticate, state.oauth.engine, token, audience, scope, utcnow(),
                                             dpop)
        except BearerError as exc:
            raise ApiError(with_dpop_challenge(_challenge(exc), exc, dpop, state.settings.dpop.algorithms)) from None

    return dependency


class ColdRoute(APIRoute):
    """An admin API route whose ``session`` parameter is a cold-lane transaction opened on the route's own worker
    thread: committed when the route returns, rolled back when it raises (a refused request changes nothing).
    No session outlives a thread hop."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if "session" in inspect.signature(endpoint).parameters:
            endpoint = _in_transaction(endpoint)
        super().__init__(path, endpoint, **kwargs)


def _in_transaction(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` with its ``session`` given by a transaction of its own thread; FastAPI sees its other
    parameters (annotations resolved in the endpoint's module) and the broker's state."""
    hints = typing.get_type_hints(endpoint, include_extras=True)
    signature = inspect.signature(endpoint)
    parameters = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
                  if p.name != "session"]
    parameters.append(inspect.Parameter("broker_state", inspect.Parameter.KEYWORD_ONLY, annotation=State))

    @functools.wraps(endpoint)
    def route(*args: Any, broker_state: BrokerState, **kwargs: Any) -> Any:
        with broker_state.database.transaction() as session:
            return endpoint(*args, session=session, **kwargs)

    route.__signature__ = signature.replace(  # type: ignore[attr-defined]  # FastAPI reads it; functions may carry one
        parameters=parameters, return_annotation=hints.get("return", signature.return_annotation))
    return route


def _challenge(exc: BearerError) -> JSONResponse:
    header = f'Bearer realm="mcp-auth-broker admin API", error="{exc.error}", scope="{exc.scope}"'
    return JSONResponse({"error": exc.error, "error_description": exc.description},
                        status_code=exc.status_code, headers={"www-authenticate": header, **NO_STORE})


def actor(caller: Caller) -> str:
    return f"client:{caller.client_id}"


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


Reader = Annotated[Caller, Depends(require("admin:read"))]
Writer = Annotated[Caller, Depends(require("admin:write"))]
Revoker = Annotated[Caller, Depends(require("security:revoke"))]
