"""The adapter between HTTP and the protocol core: requests in, (status, body, headers) out.

Routes never build OAuth error bodies by hand: the core returns or raises, and the helpers
here render JSON (token-side, always ``no-store``), redirects, or pages.
"""

from __future__ import annotations

import secrets
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from broker.oauth.errors import AuthorizationPageError, InvalidRequest
from broker.oauth.params import Params
from broker.oauth.request import HttpRequest
from broker.params import JsonError, load_json
from broker.web.headers import NO_STORE_SENSITIVE
from broker.web.state import BrokerState
from broker.web.templates import templates

T = TypeVar("T")


def browser_cookie_name(state: BrokerState) -> str:
    # __Host- cookies must be Secure, which needs https; loopback dev runs on http.
    return "__Host-broker-browser" if _secure(state) else "broker-browser"


def _secure(state: BrokerState) -> bool:
    return state.settings.issuer.startswith("https://")


def browser_id(request: Request, state: BrokerState) -> str | None:
    return request.cookies.get(browser_cookie_name(state))


def ensure_browser_id(request: Request, state: BrokerState) -> tuple[str, bool]:
    """The browser's binding value, and whether it must be set now."""
    existing = browser_id(request, state)
    if existing and 20 <= len(existing) <= 100:
        return existing, False
    return secrets.token_urlsafe(32), True


def set_browser_cookie(response: Response, state: BrokerState, value: str) -> None:
    response.set_cookie(browser_cookie_name(state), value, max_age=86400, path="/", secure=_secure(state),
                        httponly=True, samesite="lax")


async def form_params(request: Request) -> Params:
    return Params.from_form(await request.body(), request.headers.get("content-type"))


def query_params(request: Request) -> Params:
    return Params.from_query(request.scope.get("query_string", b""))


def http_request(request: Request, state: BrokerState, params: Params, db: Session,
                 payload: Any = None) -> HttpRequest:
    return HttpRequest(method=request.method, url=f"{state.settings.issuer}{request.url.path}",
                       headers=dict(request.headers), params=params, db=db, now=state.oauth.now(),
                       client_ip=request.client.host if request.client else None, json=payload)


def render(result: tuple[int, Any, list[tuple[str, str]]]) -> Response:
    status, body, headers = result
    out = {k.lower(): v for k, v in headers if k.lower() != "content-type"}
    for name, value in NO_STORE_SENSITIVE.items():
        out.setdefault(name, value)
    if status == 401 and "www-authenticate" not in out:
        out["www-authenticate"] = 'Basic realm="mcp-auth-broker"'  # RFC 6749 §5.2 invalid_client
    return JSONResponse(body, status_code=status, headers=out)


def invalid_request(description: str) -> Response:
    error = InvalidRequest(description)
    return JSONResponse({"error": error.error, "error_description": error.description}, status_code=400,
                        headers=NO_STORE_SENSITIVE)


def redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=302, headers=NO_STORE_SENSITIVE)


def page(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(request, template, context, status_code=status_code, headers=NO_STORE_SENSITIVE)


def error_page(request: Request, error: AuthorizationPageError) -> HTMLResponse:
    return page(request, "pages/error.html", {"title": error.title, "detail": error.detail}, error.status_code)


def json_body(raw: bytes) -> Any:
    """The request's JSON (``broker.params.load_json``: strict, bounded depth), or None when it is not."""
    try:
        return load_json(raw)
    except JsonError:
        return None
