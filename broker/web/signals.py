"""Receivers for the IdP's security signals: SSF push (``/ssf/events``) and Global Token Revocation
(``/global-logout``, what Okta Universal Logout calls)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from broker.lifecycle import signals
from broker.storage.models import utcnow
from broker.web.deps import State
from broker.web.headers import NO_STORE
from broker.web.oauth_http import json_body
from broker.web.state import BrokerState

router = APIRouter(tags=["security signals"])
SET_MEDIA_TYPE = "application/secevent+jwt"


def _error(error: signals.SignalError) -> JSONResponse:
    # RFC 8935 §2.4: {"err": code, "description": text}
    return JSONResponse({"err": error.code, "description": error.description}, status_code=error.status_code,
                        headers=NO_STORE)


async def _rejected(state: BrokerState, receiver: str, error: signals.SignalError) -> JSONResponse:
    await state.database.cold(signals.record_rejection, receiver, error)
    return _error(error)


@router.post("/ssf/events", summary="Shared Signals push receiver (RFC 8935): CAEP and RISC events",
             status_code=202, response_class=Response,
             responses={202: {"description": "Accepted (also for subjects the broker does not know)"},
                        400: {"description": "RFC 8935 error: invalid_request, invalid_key, invalid_issuer, "
                                             "invalid_audience"},
                        404: {"description": "No transmitter is configured"},
                        413: {"description": "Request body too large"}},
             openapi_extra={"requestBody": {"content": {SET_MEDIA_TYPE: {"schema": {"type": "string"}}}}})
async def ssf_events(request: Request, state: State) -> Response:
    if state.ssf is None:
        return JSONResponse({"err": "invalid_request", "description": "no transmitter is configured"}, 404)
    try:
        if (request.headers.get("content-type") or "").split(";")[0].strip().lower() != SET_MEDIA_TYPE:
            raise signals.SignalError("invalid_request", f"the body must be {SET_MEDIA_TYPE}")
        token = (await request.body()).decode("ascii").strip()
        signal = await state.ssf.verify(token, typ="secevent+jwt", required=("jti",))
        await state.database.cold(_apply_set, state, signal)
    except UnicodeDecodeError:
        return await _rejected(state, "ssf", signals.SignalError("invalid_request", "the body is not a JWT"))
    except signals.SignalError as error:
        return await _rejected(state, "ssf", error)
    return Response(status_code=202)


def _apply_set(session: Session, state: BrokerState, signal: signals.VerifiedSignal) -> None:
    now = utcnow()
    if not signals.first_delivery(session, signal, "ssf", now):
        signals.record_rejection(session, f"ssf:{signal.sender.id}",
                                 signals.SignalError("invalid_request", "replayed event (jti seen before)"))
        return  # RFC 8935 §2.3: a duplicate is acknowledged and not acted on again
    signals.apply_ssf(session, signal, state.settings.idps, now)


@router.post("/global-logout", summary="Global Token Revocation: end a user's sessions and tokens",
             status_code=204, response_class=Response,
             responses={204: {"description": "The user's tokens are revoked"},
                        400: {"description": "Malformed request or subject"},
                        401: {"description": "Missing or invalid signed JWT"},
                        404: {"description": "No such user (or no caller configured)"},
                        413: {"description": "Request body too large"}},
             openapi_extra={"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}})
async def global_logout(request: Request, state: State) -> Response:
    if state.logout is None:
        return JSONResponse({"err": "invalid_request", "description": "no caller is configured"}, 404)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise signals.SignalError("authentication_failed", "a signed JWT bearer is required", 401)
        signal = await state.logout.verify(token.strip(), typ=None, required=("exp", "jti"))
        body = json_body(await request.body())
        if not isinstance(body, dict) or "sub_id" not in body:
            raise signals.SignalError("invalid_request", "the body must be JSON with sub_id")
        affected = await state.database.cold(_apply_logout, state, signal, body["sub_id"])
    except signals.SignalError as error:
        if error.code in ("invalid_key", "invalid_issuer", "invalid_audience"):
            error = signals.SignalError(error.code, error.description, 401)
        return await _rejected(state, "global-logout", error)
    if affected == 0:
        return JSONResponse({"err": "not_found", "description": "no such user"}, status_code=404)
    return Response(status_code=204)


def _apply_logout(session: Session, state: BrokerState, signal: signals.VerifiedSignal, subject: Any) -> int:
    now = utcnow()
    if not signals.first_delivery(session, signal, "global-logout", now):
        raise signals.SignalError("invalid_request", "this request was already used (jti)")
    return signals.apply_logout(session, signal, subject, state.settings.idps, now)
