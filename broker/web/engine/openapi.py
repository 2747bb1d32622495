"""The OpenAPI description of the paths the front serves, declared as FastAPI routes that are never mounted:
FastAPI writes their entries (summary, body, responses) like any other route's, and ``BrokerApp.openapi``
puts them first in the document."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

OAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "RFC 6749 §5.2 error: invalid_request, invalid_grant, unauthorized_client, "
                         "unsupported_grant_type, invalid_scope, invalid_target, unsupported_token_type, "
                         "insufficient_user_authentication"},
    401: {"description": "invalid_client (with WWW-Authenticate)"},
    413: {"description": "Request body too large"},
}
TOKEN_ERRORS = {**OAUTH_ERRORS,
                400: {"description": OAUTH_ERRORS[400]["description"] + "; invalid_dpop_proof (RFC 9449 §5: the DPoP "
                      "proof is malformed, replayed, or for another request); use_dpop_nonce (RFC 9449 §8, with a "
                      "DPoP-Nonce header to retry with, when [dpop] require_nonce is on)"},
                503: {"description": "temporarily_unavailable: the identity provider, or a trusted "
                                                     "ID-JAG issuer's signing keys, could not be reached"},
                429: {"description": "temporarily_unavailable: rate limited per client or address ([rate_limits]); "
                                     "Retry-After says when to try again"}}
FORM_BODY = {"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}}
DPOP_HEADER = {"name": "DPoP", "in": "header", "required": False, "schema": {"type": "string"},
               "description": "A DPoP proof (RFC 9449 §4) for POST <issuer>/token: the access token is bound to its "
                              "key (cnf.jkt, token_type DPoP)"}


class JwkSetResponse(JSONResponse):
    media_type = "application/jwk-set+json"  # RFC 7517 §8.5.1


FEED_PARAMETERS = [
    {"name": "since", "in": "query", "required": False, "description": "the cursor of the last page read (0: from "
     "the start)", "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1, "default": 0}},
    {"name": "limit", "in": "query", "required": False, "description": "at most this many entries (capped at 1000)",
     "schema": {"type": "integer", "minimum": 1, "default": 500}},
]


def _served_by_the_front() -> None:
    """Never called: the router below is not mounted; the front answers these paths."""
    raise AssertionError("documentation only")


def documented(discovery_paths: list[str]) -> APIRouter:
    """The front's endpoints as the OpenAPI document lists them."""
    docs = APIRouter()
    docs.add_api_route("/token", _served_by_the_front, methods=["POST"], tags=["oauth"],
                       summary="Token endpoint: authorization_code, refresh_token, client_credentials, jwt-bearer "
                               "(ID-JAG), token-exchange (to ID-JAG)",
                       responses=TOKEN_ERRORS, openapi_extra={**FORM_BODY, "parameters": [DPOP_HEADER]},
                       response_class=JSONResponse)
    docs.add_api_route("/revoke", _served_by_the_front, methods=["POST"], tags=["oauth"],
                       summary="Token revocation (RFC 7009)", responses=OAUTH_ERRORS, openapi_extra=FORM_BODY,
                       response_class=JSONResponse)
    docs.add_api_route("/introspect", _served_by_the_front, methods=["POST"], tags=["oauth"],
                       summary="Token introspection (RFC 7662), for registered resource servers",
                       responses=OAUTH_ERRORS, openapi_extra=FORM_BODY, response_class=JSONResponse)
    docs.add_api_route("/revocations", _served_by_the_front, methods=["GET"], tags=["oauth"],
                       summary="Revocation feed for MCP servers that verify tokens locally (client_secret_basic only)",
                       responses={**OAUTH_ERRORS, 403: {"description": "The client may not read the feed "
                                                                       "(access_denied)"}},
                       openapi_extra={"parameters": FEED_PARAMETERS}, response_class=JSONResponse)
    docs.add_api_route("/jwks", _served_by_the_front, methods=["GET"], tags=["discovery"],
                       summary="JSON Web Key Set: active and not-yet-retired signing keys",
                       response_class=JwkSetResponse)
    for path in discovery_paths:
        docs.add_api_route(path, _served_by_the_front, methods=["GET"], tags=["discovery"],
                           summary="Authorization server metadata (RFC 8414)", response_class=JSONResponse)
    return docs
