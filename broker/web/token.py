"""Dynamic Client Registration (``POST /register``); the rest of the token side is served by the front
(``broker.web.engine``)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from broker.oauth.cimd import is_client_id_url
from broker.oauth.params import Params
from broker.web.deps import state_of
from broker.web.oauth_http import (
    http_request,
    in_transaction,
    invalid_request,
    json_body,
    render,
)
from broker.web.ratelimit import basic_client_id
from broker.web.routes import plain_router

router = plain_router(tags=["oauth"])  # PlainRoutes, mounted first: see broker.web.routes

OAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "RFC 6749 §5.2 error: invalid_request, invalid_client_metadata, invalid_redirect_uri"},
    401: {"description": "invalid_client (with WWW-Authenticate)"},
    413: {"description": "Request body too large"},
}


def _no_metadata_fetch(request: Request, params: Params) -> bool:
    """Whether finding this request's client needs no network: no client_id URL (a CIMD client, whose
    document may have to be fetched), no client assertion (whose client is named inside it), and no
    Authorization header we cannot read as strictly as authlib reads it leniently (junk in the base64)."""
    if params.get("client_assertion") is not None:
        return False
    named = [params.get("client_id")]
    header = request.headers.get("authorization")
    if header is not None:
        basic = basic_client_id(header.encode("latin-1"))
        if basic is None:
            return False
        named.append(basic)
    return not any(client_id is not None and is_client_id_url(client_id) for client_id in named)


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

    def run(session: Any) -> Response:
        return render(state.oauth.register(http_request(request, state, Params([]), session, payload)))

    return await in_transaction(state, run)
