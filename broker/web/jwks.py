"""The broker's public signing keys (``jwks_uri``)."""

from __future__ import annotations

import datetime as dt

from fastapi import Request
from fastapi.responses import JSONResponse

from broker.web.deps import state_of
from broker.web.oauth_http import in_transaction
from broker.web.routes import plain_router

router = plain_router(tags=["discovery"])  # PlainRoutes, mounted first: see broker.web.routes


class JwkSetResponse(JSONResponse):
    media_type = "application/jwk-set+json"  # RFC 7517 §8.5.1


@router.get("/jwks", summary="JSON Web Key Set: active and not-yet-retired signing keys",
            response_class=JwkSetResponse)
async def jwks(request: Request) -> JSONResponse:
    state = state_of(request)
    grace = dt.timedelta(seconds=state.settings.longest_jwt_lifetime)
    body = await in_transaction(state, state.keyring.jwks, grace, inline=True)
    return JwkSetResponse(body, headers={"cache-control": "public, max-age=300", "access-control-allow-origin": "*"})
