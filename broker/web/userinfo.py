"""The UserInfo endpoint over HTTP (OIDC Core §5.3): GET and POST, the access token in the header.

Only the ``Authorization`` header carries the token (RFC 6750 §2.1; a DPoP-bound one with the ``DPoP`` scheme
and a proof, RFC 9449 §7.1); the checks and the claims
are the core's (``broker.oauth.userinfo``). Errors are RFC 6750 §3 challenges.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from broker.oauth.bearer import BearerError
from broker.oauth.userinfo import REQUIRED_SCOPE, userinfo
from broker.storage.models import utcnow
from broker.web.credentials import presented, with_dpop_challenge
from broker.web.deps import State
from broker.web.headers import NO_STORE_SENSITIVE
from broker.web.state import BrokerState

router = APIRouter(tags=["openid"])

REALM = "mcp-auth-broker"
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Claims about the user: sub; email and email_verified (email scope); name (profile)"},
    400: {"description": "invalid_request: the Authorization header is repeated (WWW-Authenticate: Bearer)"},
    401: {"description": "Missing, invalid, expired or revoked access token, or one for another audience "
                         "(WWW-Authenticate: Bearer, error=\"invalid_token\"), a DPoP-bound token sent as Bearer, "
                         "or a bad DPoP proof (WWW-Authenticate: DPoP, error=\"invalid_dpop_proof\")"},
    403: {"description": "insufficient_scope: the access token's scope lacks openid"},
    413: {"description": "Request body too large"},
}


@router.get("/userinfo", summary="UserInfo endpoint (OpenID Connect Core §5.3)", responses=RESPONSES,
            response_class=JSONResponse)
async def userinfo_get(request: Request, state: State) -> Response:
    return await _answer(request, state)


@router.post("/userinfo", summary="UserInfo endpoint (OpenID Connect Core §5.3)", responses=RESPONSES,
             response_class=JSONResponse)
async def userinfo_post(request: Request, state: State) -> Response:
    return await _answer(request, state)


async def _answer(request: Request, state: BrokerState) -> Response:
    token, dpop = presented(request, state.settings.issuer)
    try:
        if len(request.headers.getlist("authorization")) > 1:
            raise BearerError("invalid_request", "the Authorization header is repeated", 400, REQUIRED_SCOPE)
        claims = await state.database.cold(userinfo, state.oauth.engine, token, utcnow(), dpop)
    except BearerError as exc:
        refusal = _challenge(exc, credentials_sent=token is not None)
        return with_dpop_challenge(refusal, exc, dpop, state.settings.dpop.algorithms)
    return JSONResponse(claims, headers=NO_STORE_SENSITIVE)  # OIDC Core §5.3.2 via RFC 6749 §5.1: no caching


def _challenge(exc: BearerError, credentials_sent: bool) -> JSONResponse:
    header = f'Bearer realm="{REALM}"'
    if credentials_sent or exc.status_code != 401:  # RFC 6750 §3.1: no error code when none was sent
        header += f', error="{exc.error}", error_description="{exc.description}"'
    if exc.error == "insufficient_scope":
        header += f', scope="{REQUIRED_SCOPE}"'  # RFC 6750 §3: the scope the request needs
    return JSONResponse({"error": exc.error, "error_description": exc.description}, status_code=exc.status_code,
                        headers={**NO_STORE_SENSITIVE, "www-authenticate": header})
