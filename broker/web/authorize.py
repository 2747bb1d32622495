"""The browser side of an authorization: ``/authorize``, the upstream callback, and consent."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from broker.federation.base import Connector
from broker.federation.errors import UpstreamError, error_from_response
from broker.oauth import authorize as core_authorize
from broker.oauth.errors import AuthorizationPageError, InvalidRequest
from broker.oauth.login import ConsentNeeded, UpstreamStart
from broker.web.deps import State
from broker.web.oauth_http import (
    browser_id,
    ensure_browser_id,
    error_page,
    form_params,
    page,
    query_params,
    redirect,
    set_browser_cookie,
)
from broker.web.state import BrokerState

log = logging.getLogger("broker.web")
router = APIRouter(tags=["authorization"])

PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    302: {"description": "Redirect to the identity provider, or to the client with `code` or `error`, "
                         "always with `state` and `iss`"},
    400: {"description": "An HTML error page: the client or redirect URI could not be validated"},
    403: {"description": "An HTML error page: client disabled or awaiting approval, or wrong browser"},
}
AUTHORIZE_RESPONSES = {**PAGE_RESPONSES, 429: {"description": "An HTML error page: rate limited per client or "
                                                              "address ([rate_limits]), with Retry-After"}}


@router.get("/authorize", summary="Authorization endpoint (OAuth 2.1 §4.1.1, PKCE S256, RFC 8707 resource)",
            responses=AUTHORIZE_RESPONSES, response_class=Response)
async def authorize(request: Request, state: State) -> Response:
    auth = None
    try:
        params = query_params(request)
        auth = await state.database.cold(state.oauth.validate_authorization, params)
        browser, new_cookie = ensure_browser_id(request, state)
        idp_id = state.oauth.automatic_idp(auth)
        if idp_id is None:
            pending_id = await state.database.cold(state.oauth.login.hold, auth, browser, state.oauth.now())
            response = redirect(f"/authorize/choose?pending={pending_id}")
        else:  # one transaction records the request and starts the upstream sign-in
            connector = state.oauth.connector(idp_id)
            start = await state.database.cold(state.oauth.login.begin, auth, idp_id, browser, state.oauth.now())
            response = await _upstream_redirect(connector, start, auth.login_hint)
    except AuthorizationPageError as error:
        return error_page(request, error)
    except InvalidRequest as error:
        return error_page(request, AuthorizationPageError("Invalid request", error.description or "malformed"))
    except core_authorize.AuthorizationError as failure:
        return redirect(core_authorize.error_location(failure, state.settings.issuer))
    except UpstreamError as exc:
        assert auth is not None
        refused = core_authorize.AuthorizationError(state.oauth.upstream_failure(exc), auth.redirect_uri, auth.state)
        return redirect(core_authorize.error_location(refused, state.settings.issuer))
    if new_cookie:
        set_browser_cookie(response, state, browser)
    return response


@router.get("/authorize/choose", summary="Identity provider picker (when several are configured)",
            responses=PAGE_RESPONSES, response_class=Response)
async def choose(request: Request, state: State) -> Response:
    """The picker: a link per IdP, and a work-email field that finds the IdP by domain."""
    browser = browser_id(request, state)
    pending_id: str | None = None
    try:
        params = query_params(request)
        pending_id, email = params.get("pending"), params.get("email")
        idp_id = params.get("idp") or state.oauth.idp_for_email(email)
        if idp_id is None or idp_id not in state.oauth.connectors:
            message = "No identity provider serves that email domain; pick one below." if email else None
            return page(request, "pages/choose.html", {"pending": pending_id, "choices": state.oauth.idp_choices(),
                                                       "message": message, "email": email or ""})
        return await _to_upstream(state, pending_id, idp_id, browser, email)
    except AuthorizationPageError as error:
        return error_page(request, error)
    except InvalidRequest as error:
        return error_page(request, AuthorizationPageError("Invalid request", error.description or "malformed"))
    except UpstreamError as exc:
        assert pending_id is not None  # the IdP is called only for a sign-in start_upstream accepted
        location = await state.database.cold(state.oauth.login.fail_by_id, pending_id,
                                             state.oauth.upstream_failure(exc))
        return redirect(location.location)


async def _to_upstream(state: BrokerState, pending_id: str | None, idp_id: str, browser: str | None,
                       login_hint: str | None) -> Response:
    connector = state.oauth.connector(idp_id)  # an unknown IdP fails here, before anything is written
    start = await state.database.cold(state.oauth.login.start_upstream, pending_id, idp_id, browser,
                                      state.oauth.now())
    return await _upstream_redirect(connector, start, login_hint)


async def _upstream_redirect(connector: Connector, start: UpstreamStart, login_hint: str | None) -> Response:
    location = await connector.authorization_url(state=start.state, nonce=start.nonce,
                                                 code_challenge=start.code_challenge, login_hint=login_hint)
    return redirect(location)


@router.get("/callback/{idp_id}", summary="Where the upstream identity provider returns the user",
            responses={**PAGE_RESPONSES, 404: {"description": "An HTML error page: no such identity provider"}},
            response_class=Response)
async def callback(idp_id: str, request: Request, state: State) -> Response:
    try:
        params = query_params(request)
        connector = state.oauth.connector(idp_id)
        pending, verifier = await state.database.cold(state.oauth.login.claim_callback, idp_id,
                                                      params.get("state"), browser_id(request, state),
                                                      state.oauth.now())
    except AuthorizationPageError as error:
        return error_page(request, error)
    except InvalidRequest as error:
        return error_page(request, AuthorizationPageError("Invalid response", error.description or "malformed"))
    try:
        await connector.check_response_issuer(params.get("iss"))  # RFC 9207: mix-up at the upstream side
        code = params.get("code")
        if params.get("error") or not code:  # RFC 6749 §4.1.2.1: the IdP refused or failed
            raise error_from_response(params.get("error") or "invalid_request", params.get("error_description"))
        identity = await connector.complete(code=code, code_verifier=verifier, nonce=pending.upstream_nonce)
    except (UpstreamError, InvalidRequest) as exc:
        if isinstance(exc, UpstreamError):  # operators need the IdP's reason (e.g. "user not assigned")
            log.warning("upstream sign-in failed", extra={"idp": idp_id, "error": exc.upstream_error,
                                                          "description": exc.description,
                                                          "upstream_description": getattr(exc, "upstream_description",
                                                                                          None)})
        failure = state.oauth.upstream_failure(exc) if isinstance(exc, UpstreamError) else exc
        failed = await state.database.cold(state.oauth.login.fail_by_id, pending.id, failure)
        return redirect(failed.location)
    outcome = await state.database.cold(state.oauth.login.complete_by_id, pending.id, identity,
                                        state.oauth.now())
    if isinstance(outcome, ConsentNeeded):
        return redirect(f"/consent?pending={outcome.pending_id}")
    return redirect(outcome.location)


@router.get("/consent", summary="The consent page", responses={404: {"description": "Nothing awaits consent"}},
            response_class=Response)
async def consent_page(request: Request, state: State) -> Response:
    browser = browser_id(request, state)
    try:
        pending_id = query_params(request).get("pending")
        view = await state.database.cold(state.oauth.login.consent_view, pending_id, browser, state.oauth.now())
    except AuthorizationPageError as error:
        return error_page(request, error)
    except InvalidRequest as error:
        return error_page(request, AuthorizationPageError("Invalid request", error.description or "malformed"))
    csrf = state.oauth.login.csrf_token(view.pending_id, browser or "")
    return page(request, "pages/consent.html", {"view": view, "csrf_token": csrf})


@router.post("/consent", summary="Approve or deny a consent request (CSRF-protected form)",
             responses=PAGE_RESPONSES, response_class=Response)
async def consent_decision(request: Request, state: State) -> Response:
    try:
        form = await form_params(request)
        decision = form.get("decision")
        if decision not in ("approve", "deny"):
            raise AuthorizationPageError("Invalid request", "The form must say approve or deny.")
        outcome = await state.database.cold(state.oauth.login.decide, form.get("pending"),
                                            browser_id(request, state), form.get("csrf_token"), decision == "approve",
                                            state.oauth.now())
    except AuthorizationPageError as error:
        return error_page(request, error)
    except InvalidRequest as error:
        return error_page(request, AuthorizationPageError("Invalid request", error.description or "malformed"))
    return redirect(outcome.location)
