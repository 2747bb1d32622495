"""HTTP adapter for the built-in test OpenID provider, mounted at ``/testidp`` in dev mode only.

Requests come in as raw bytes and are parsed strictly by ``broker.testidp.params``; the core's
errors go out here and nowhere else: JSON with ``no-store`` at ``/token``, a Bearer challenge
at ``/userinfo``, and at ``/authorize`` a page (before client and redirect URI are validated)
or a redirect to the client carrying ``error``, ``state`` and ``iss``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from broker.testidp.authorize import AuthorizationRequest, LoginFailed
from broker.testidp.bearer import bearer_token
from broker.testidp.errors import InvalidRequest, MissingToken, OAuthError
from broker.testidp.params import ProviderParams
from broker.testidp.provider import TestIdentityProvider
from broker.web.deps import state_of
from broker.web.headers import NO_STORE_SENSITIVE
from broker.web.routes import plain_router
from broker.web.templates import templates

# PlainRoutes (broker.web.routes), mounted first: every sign-in through the test IdP crosses three of them.
router = plain_router(prefix="/testidp", tags=["test identity provider"])

PUBLIC = {"cache-control": "public, max-age=300", "access-control-allow-origin": "*"}
REALM = "testidp"
_CHALLENGE_UNSAFE = re.compile(r'[^\x20\x21\x23-\x5B\x5D-\x7E]')  # RFC 6750 §3: error_description chars


class JwkSetResponse(JSONResponse):
    media_type = "application/jwk-set+json"  # RFC 7517 §8.5.1


AUTHORIZE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The login form (HTML)"},
    302: {"description": "Back to the client with `code`, or with `error`, `state` and `iss`"},
    400: {"description": "An HTML error page: the client or redirect URI could not be validated"},
    413: {"description": "Request body too large"},
}
TOKEN_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "RFC 6749 §5.2 error: invalid_request, invalid_grant, unsupported_grant_type, ..."},
    401: {"description": "invalid_client (WWW-Authenticate: Basic)"},
    413: {"description": "Request body too large"},
}
USERINFO_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "invalid_request (WWW-Authenticate: Bearer)"},
    401: {"description": "Missing or invalid access token (WWW-Authenticate: Bearer)"},
    403: {"description": "insufficient_scope"},
    413: {"description": "Request body too large"},
}


def _provider(request: Request) -> TestIdentityProvider:
    provider = state_of(request).testidp
    assert provider is not None, "the test IdP's routes are mounted only when it is enabled"
    return provider


@router.get("/.well-known/openid-configuration", summary="OpenID Provider Metadata of the test IdP",
            response_class=JSONResponse)
async def discovery(request: Request) -> Response:
    return JSONResponse(_provider(request).metadata(), headers=PUBLIC)


@router.get("/jwks", summary="Public signing keys of the test IdP", response_class=JwkSetResponse)
async def jwks(request: Request) -> Response:
    keys = await state_of(request).database.cold(_provider(request).jwks)
    return JwkSetResponse(keys, headers={**PUBLIC, "cache-control": "public, max-age=60"})


@router.get("/authorize", summary="Authorization endpoint: shows the login form", response_class=Response,
            responses=AUTHORIZE_RESPONSES)
async def authorize(request: Request) -> Response:
    provider = _provider(request)
    return _authorization(request, provider, lambda: ProviderParams.from_query(request.scope["query_string"]))


@router.post("/authorize", summary="Authorization endpoint: the posted login form (or a POSTed request)",
             response_class=Response, responses=AUTHORIZE_RESPONSES)
async def authorize_post(request: Request) -> Response:
    # Only the form body counts; a query string on the POST is ignored, never merged.
    body, provider, content_type = await request.body(), _provider(request), request.headers.get("content-type")
    return _authorization(request, provider, lambda: ProviderParams.from_form(body, content_type))


@router.post("/token", summary="Token endpoint: authorization_code (PKCE S256) and refresh_token",
             responses=TOKEN_RESPONSES, response_class=JSONResponse)
async def token(request: Request) -> Response:
    body, provider = await request.body(), _provider(request)

    def run(session: Session) -> Response:
        try:
            params = ProviderParams.from_form(body, request.headers.get("content-type"))
            result = provider.token(params, _single_header(request, "authorization"), session)
        except OAuthError as error:
            return _token_error(error)
        return JSONResponse(result, headers=NO_STORE_SENSITIVE)

    return await state_of(request).database.cold(run)


@router.get("/userinfo", summary="UserInfo endpoint (Bearer access token)", operation_id="testidp_userinfo_get",
            responses=USERINFO_RESPONSES, response_class=JSONResponse)
@router.post("/userinfo", summary="UserInfo endpoint (Bearer access token)", operation_id="testidp_userinfo_post",
             responses=USERINFO_RESPONSES, response_class=JSONResponse)
async def userinfo(request: Request) -> Response:
    body, provider = await request.body(), _provider(request)

    def run(session: Session) -> Response:
        try:
            form = ProviderParams.from_form(body, request.headers.get("content-type")) if body else None
            claims = provider.userinfo(bearer_token(_single_header(request, "authorization"), form), session)
        except OAuthError as error:
            return _bearer_error(error)
        return JSONResponse(claims, headers=NO_STORE_SENSITIVE)

    return await state_of(request).database.cold(run)


# ---------------------------------------------------------------- authorization endpoint


def _authorization(request: Request, provider: TestIdentityProvider, parse: Callable[[], ProviderParams]) -> Response:
    """Show the login form, or (when the form was posted with ``username``) log in and redirect."""
    try:
        params = parse()
        if params.has("username"):
            return _redirect(provider.login(params).location())
        auth_request = provider.begin_authorization(params)
        return _login_page(request, provider, auth_request, auth_request.login_hint or "", None)
    except LoginFailed as failed:
        return _login_page(request, provider, failed.request, failed.username, failed.message)
    except OAuthError as error:
        return _authorization_error(request, provider, error)


def _login_page(request: Request, provider: TestIdentityProvider, auth_request: AuthorizationRequest,
                username: str, message: str | None) -> Response:
    context = {"action": provider.authorization_endpoint, "fields": auth_request.form_fields(),
               "client_id": auth_request.client_id, "redirect_host": urlsplit(auth_request.redirect_uri).netloc,
               "username": username, "message": message, "users": provider.directory.users()}
    return templates.TemplateResponse(request, "testidp/login.html", context, headers=NO_STORE_SENSITIVE)


def _authorization_error(request: Request, provider: TestIdentityProvider, error: OAuthError) -> Response:
    if error.redirectable:
        return _redirect(provider.authorization_error(error).location())
    # RFC 6749 §4.1.2.1: client or redirect URI not validated, so tell the user, never redirect
    return templates.TemplateResponse(request, "testidp/error.html", {"error": error},
                                      status_code=error.status_code, headers=NO_STORE_SENSITIVE)


def _redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=302, headers=NO_STORE_SENSITIVE)


# ---------------------------------------------------------------- token and userinfo errors


def _token_error(error: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE_SENSITIVE)
    if error.status_code == 401:
        # RFC 6749 §5.2: a 401 for invalid_client names the scheme the client may use
        headers["www-authenticate"] = f'Basic realm="{REALM}"'
    return JSONResponse(error.body(), status_code=error.status_code, headers=headers)


def _bearer_error(error: OAuthError) -> JSONResponse:
    challenge = f'Bearer realm="{REALM}"'
    if not isinstance(error, MissingToken):  # RFC 6750 §3.1: no error code when no credentials were sent
        description = _CHALLENGE_UNSAFE.sub("'", error.description.replace('"', "'"))
        challenge += f', error="{error.error}", error_description="{description}"'
    headers = {**NO_STORE_SENSITIVE, "www-authenticate": challenge}
    return JSONResponse(error.body(), status_code=error.status_code, headers=headers)


def _single_header(request: Request, name: str) -> str | None:
    values: list[Any] = request.headers.getlist(name)
    if len(values) > 1:
        raise InvalidRequest(f"the {name} header is repeated")
    return values[0] if values else None
