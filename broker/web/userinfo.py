"""The UserInfo endpoint over HTTP (OIDC Core §5.3): GET and POST, the bearer token in the header.

Only the ``Authorization`` header carries the token (RFC 6750 §2.1); the checks and the claims
are the core's (``broker.oauth.userinfo``). Errors are RFC 6750 §3 challenges.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from broker.oauth.bearer import BearerError
from broker.oauth.userinfo import REQUIRED_SCOPE, userinfo
from broker.storage.models import utcnow
from broker.web.deps import State
from broker.web.headers import NO_STORE_SENSITIVE
from broker.web.state import BrokerState

router = APIRouter(tags=["openid"])

REALM = "mcp-auth-broker"
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Claims about the user: sub; email and email_verified (email scope); name (profile)"},
    400: {"description": "invalid_request: the Authorization header is repeated (WWW-Authenticate: Bearer)"},
    401: {"description": "Missing, invalid, expired or revoked access token, or one for another audience "
                         "(WWW-Authenticate: Bearer, error=\"invalid_token\")"},
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
    token = None
    try:
        token = _bearer(request)
        claims = await state.database.cold(userinfo, state.oauth.engine, token, utcnow())
    except BearerError as exc:
        return _challenge(exc, credentials_sent=token is not None)
    return JSONResponse(claims, headers=NO_STORE_SENSITIVE)  # OIDC Core §5.3.2 via RFC 6749 §5.1: no caching


def _bearer(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (RFC 6750 §2.1); None when there is none."""
    values = request.headers.getlist("authorization")
    if len(values) > 1:
        raise BearerError("invalid_request", "the Authorization header is repeated", 400, REQUIRED_SCOPE)
    scheme, _, token = (values[0] if values else "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _challenge(exc: BearerError, credentials_sent: bool) -> JSONResponse:
    header = f'Bearer realm="{REALM}"'
    if credentials_sent or exc.status_code != 401:  # RFC 6750 §3.1: no error code when none was sent
        header += f', error="{exc.error}", error_description="{exc.description}"'
    if exc.error == "insufficient_scope":
        header += f', scope="{REQUIRED_SCOPE}"'  # RFC 6750 §3: the scope the request needs
    return JSONResponse({"error": exc.error, "error_description": exc.description}, status_code=exc.status_code,
                        headers={**NO_STORE_SENSITIVE, "www-authenticate": header})
