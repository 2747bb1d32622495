"""Dynamic Client Registration (``POST /register``); the rest of the token side is served by the front
(``broker.web.engine``)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from broker.oauth.params import Params
from broker.web.deps import state_of
from broker.web.oauth_http import (
    http_request,
    invalid_request,
    json_body,
    render,
)
from broker.web.routes import plain_router

router = plain_router(tags=["oauth"])  # PlainRoutes, mounted first: see broker.web.routes

OAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "RFC 6749 §5.2 error: invalid_request, invalid_client_metadata, invalid_redirect_uri"},
    401: {"description": "invalid_client (with WWW-Authenticate)"},
    413: {"description": "Request body too large"},
}


@router.post("/register", summary="Dynamic Client Registration (RFC 7591), when enabled",
             responses={**OAUTH_ERRORS, 201: {"description": "The registered client"},
                        404: {"description": "Registration is disabled"},
                        429: {"description": "too_many_requests: rate limited per address (Retry-After), or "
                                             "registration.max_per_hour_per_address reached"}},
             openapi_extra={"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}},
             response_class=JSONResponse, status_code=201)
async def register(request: Request) -> Response:
    state = state_of(request)
    if not state.settings.registration.enabled:
        return JSONResponse({"error": "not_found", "error_description": "registration is disabled"}, 404)
    if (request.headers.get("content-type") or "").split(";")[0].strip().lower() != "application/json":
        return invalid_request("the body must be application/json")
    payload = json_body(await request.body())
    if not isinstance(payload, dict):
        return render((400, {"error": "invalid_client_metadata", "error_description": "the body must be a JSON "
                                                                                      "object"}, []))

    def run(session: Session) -> Response:
        return render(state.oauth.register(http_request(request, state, Params([]), session, payload)))

    return await state.database.cold(run)
