"""The broker's public signing keys (``jwks_uri``)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from broker.web.deps import DbSession, State

router = APIRouter(tags=["discovery"])


@router.get("/jwks", summary="JSON Web Key Set: active and not-yet-retired signing keys")
def jwks(state: State, session: DbSession) -> JSONResponse:
    grace = dt.timedelta(seconds=state.settings.longest_jwt_lifetime)
    body = state.keyring.jwks(session, grace)
    return JSONResponse(body, media_type="application/jwk-set+json",
                        headers={"cache-control": "public, max-age=300", "access-control-allow-origin": "*"})
