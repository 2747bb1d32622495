"""Token-side endpoints: token, revocation, introspection, dynamic registration, and discovery."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from broker.federation.errors import InvalidIdToken, UpstreamError, UpstreamRejected
from broker.oauth.cimd import is_client_id_url
from broker.oauth.errors import InvalidRequest, OAuth2Error
from broker.oauth.feed import revocation_feed
from broker.oauth.params import Params
from broker.storage.models import utcnow
from broker.web.deps import state_of
from broker.web.oauth_http import (
    form_params,
    http_request,
    in_transaction,
    invalid_request,
    json_body,
    query_params,
    render,
)
from broker.web.ratelimit import basic_client_id
from broker.web.routes import plain_router

router = plain_router(tags=["oauth"])  # PlainRoutes, mounted first: see broker.web.routes

OAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "RFC 6749 §5.2 error: invalid_request, invalid_grant, unauthorized_client, "
                         "unsupported_grant_type, invalid_scope, invalid_target, unsupported_token_type, "
                         "insufficient_user_authentication"},
    401: {"description": "invalid_client (with WWW-Authenticate)"},
    413: {"description": "Request body too large"},
}
TOKEN_ERRORS = {**OAUTH_ERRORS, 503: {"description": "temporarily_unavailable: the identity provider, or a trusted "
                                                     "ID-JAG issuer's signing keys, could not be reached"},
                429: {"description": "temporarily_unavailable: rate limited per client or address ([rate_limits]); "
                                     "Retry-After says when to try again"}}
FORM_BODY = {"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}}


async def _form_call(request: Request, state: Any, method: Any) -> Response:
    try:
        params = await form_params(request)
        params.reject_duplicates()  # RFC 6749 §3.2: no parameter may repeat at the token endpoint
    except InvalidRequest as error:
        return invalid_request(error.description or "malformed request")
    if method == state.oauth.token and params.get("grant_type") == "refresh_token" and state.upstream_check.enabled:
        refused = await _check_upstream(state, params.get("refresh_token"))
        if refused is not None:
            return refused
    context = await state.oauth.prepare_token_request(params) if method == state.oauth.token else {}
    return await _call(request, state, method, params, context)


async def _check_upstream(state: Any, refresh_token: str | None) -> Response | None:
    """Ask the user's IdP first (``check_upstream_on_refresh``); a response when the refresh must fail."""
    check = await in_transaction(state, state.upstream_check.find, refresh_token) if refresh_token else None
    connector = state.oauth.connectors.get(check.idp_id) if check else None
    if check is None or connector is None:
        return None
    try:
        rotated = await connector.refresh(check.refresh_token)
    except (UpstreamRejected, InvalidIdToken) as exc:
        await in_transaction(state, state.upstream_check.refused, check, exc.upstream_error, utcnow())
        return render((400, {"error": "invalid_grant", "error_description": "the identity provider no longer "
                                                                            "accepts this sign-in"}, []))
    except UpstreamError:
        return render((503, {"error": "temporarily_unavailable", "error_description": "the identity provider is "
                                                                                      "unavailable"},
                       [("Retry-After", "5")]))
    await in_transaction(state, state.upstream_check.accepted, check, rotated)
    return None


async def _call(request: Request, state: Any, method: Any, params: Params,
                context: dict[str, Any] | None = None) -> Response:
    def run(session: Any) -> Response:
        http = http_request(request, state, params, session)
        http.context.update(context or {})
        return render(method(http))

    return await in_transaction(state, run, inline=_no_metadata_fetch(request, params))


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


@router.post("/token", summary="Token endpoint: authorization_code, refresh_token, client_credentials, "
                               "jwt-bearer (ID-JAG), token-exchange (to ID-JAG)",
             responses=TOKEN_ERRORS, openapi_extra=FORM_BODY, response_class=JSONResponse)
async def token(request: Request) -> Response:
    state = state_of(request)
    return await _form_call(request, state, state.oauth.token)


@router.post("/revoke", summary="Token revocation (RFC 7009)", responses=OAUTH_ERRORS, openapi_extra=FORM_BODY,
             response_class=JSONResponse)
async def revoke(request: Request) -> Response:
    state = state_of(request)
    return await _form_call(request, state, state.oauth.revoke)


@router.post("/introspect", summary="Token introspection (RFC 7662), for registered resource servers",
             responses=OAUTH_ERRORS, openapi_extra=FORM_BODY, response_class=JSONResponse)
async def introspect(request: Request) -> Response:
    state = state_of(request)
    return await _form_call(request, state, state.oauth.introspect)


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


@router.get("/revocations", summary="Revocation feed for MCP servers that verify tokens locally",
            responses={**OAUTH_ERRORS, 403: {"description": "The client may not read the feed (access_denied)"}},
            response_class=JSONResponse)
async def revocations(request: Request) -> Response:
    state = state_of(request)
    try:
        params = query_params(request)
        cursor, limit = int(params.get("since") or 0), int(params.get("limit") or 500)
    except (InvalidRequest, ValueError):
        return invalid_request("since and limit must be integers")
    if cursor < 0 or limit < 1:
        return invalid_request("since and limit must be positive")

    def run(session: Any) -> Response:
        try:
            body = revocation_feed(state.oauth.server, http_request(request, state, Params([]), session),
                                   cursor, limit)
        except OAuth2Error as error:
            return render(error())
        return JSONResponse(body, headers={"cache-control": "no-store"})

    return await in_transaction(state, run, inline=_no_metadata_fetch(request, Params([])))
