"""What every console route shares: the session cookie, role and CSRF checks, rendering, errors.

A route hands ``console_call`` a function of ``(db, console, ...)``; it runs on a worker thread in one
transaction, after the session is resumed and the permission checked on the server. A failed check
raises ``Refused`` (403 page, nothing committed) or ``SignInNeeded`` (redirect to sign-in).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from broker.admin import sessions
from broker.admin.sessions import ConsoleUser
from broker.storage.models import utcnow
from broker.web.headers import NO_STORE_SENSITIVE
from broker.web.oauth_http import redirect
from broker.web.state import BrokerState
from broker.web.templates import templates

MAX_FIELD = 60_000  # a policy file fits; the body itself is capped by BodySizeLimit


class SignInNeeded(Exception):
    """No valid console session: go to the sign-in page."""


class Refused(Exception):
    """A 403 page: the role does not allow this, or the form's CSRF token is missing or stale."""

    def __init__(self, title: str, detail: str, status_code: int = 403):
        super().__init__(detail)
        self.title, self.detail, self.status_code = title, detail, status_code


class NotFound(Refused):
    def __init__(self, what: str):
        super().__init__("Not found", f"There is no {what}.", 404)


class ConsoleRoute(APIRoute):
    """Turns the console's exceptions into pages, so routes stay about their own work."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInNeeded:
                return redirect("/admin/login")
            except Refused as refused:
                return problem_page(request, refused)

        return route


def secure(state: BrokerState) -> bool:
    return state.settings.issuer.startswith("https://")


def cookie_name(state: BrokerState) -> str:
    # __Host- needs Secure (https); loopback dev runs on http
    return "__Host-broker-admin" if secure(state) else "broker-admin"


def set_session_cookie(response: Response, state: BrokerState, value: str) -> None:
    response.set_cookie(cookie_name(state), value, path="/", secure=secure(state), httponly=True, samesite="strict",
                        max_age=state.settings.admin.session_lifetime)


def clear_session_cookie(response: Response, state: BrokerState) -> None:
    response.delete_cookie(cookie_name(state), path="/", secure=secure(state), httponly=True, samesite="strict")


def authenticate(db: Session, request: Request, state: BrokerState, permission: frozenset[str],
                 csrf: str | None | bool = False) -> ConsoleUser:
    """The console user, checked for ``permission``; for a POST (``csrf`` not False) the form's token too."""
    console = sessions.resume(db, request.cookies.get(cookie_name(state)), state.settings.admin, utcnow())
    if console is None:
        if csrf is not False:
            raise Refused("Your session has ended",
                          "Your console session expired or you signed out, so this form was not processed. "
                          "Sign in again and repeat the change.")
        raise SignInNeeded()
    if csrf is not False and not sessions.csrf_ok(console, csrf if isinstance(csrf, str) else None):
        raise Refused("Form expired or forged (CSRF check failed)",
                      "This form did not carry this session's security token, so nothing was changed. This "
                      "happens when a form was opened before you signed in again, or when another site tried "
                      "to submit it for you. Reload the page and try again.")
    if not console.can(permission):
        raise Refused("Not allowed", "Your console role (" + (", ".join(console.roles) or "none") + ") does not "
                      "allow this. Ask an administrator if you need it.")
    return console


async def console_call(request: Request, state: BrokerState, permission: frozenset[str],
                       fn: Callable[..., Response], *args: Any, csrf: str | None | bool = False) -> Response:
    """Run ``fn(db, console, *args)`` in one committed transaction after the checks."""
    def run() -> Response:
        with state.database.transaction() as db:
            console = authenticate(db, request, state, permission, csrf)
            return fn(db, console, *args)

    return await run_in_threadpool(run)


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form as a dict (a repeated field keeps its last value). A body that is not a form, not
    UTF-8, or holds a NUL character (which PostgreSQL cannot store) is empty, so its CSRF check refuses it."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return {}
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        return {}
    pairs = parse_qsl(text, keep_blank_values=True)
    if any("\x00" in k or "\x00" in v for k, v in pairs):
        return {}
    return {k: v[:MAX_FIELD] for k, v in pairs}


def render(request: Request, template: str, console: ConsoleUser | None, context: dict[str, Any],
           status_code: int = 200) -> HTMLResponse:
    full = {"console": console, "can_manage": bool(console and console.can(sessions.MANAGE)),
            "can_offboard": bool(console and console.can(sessions.OFFBOARD)), **context}
    return templates.TemplateResponse(request, template, full, status_code=status_code, headers=NO_STORE_SENSITIVE)


def problem_page(request: Request, refused: Refused) -> HTMLResponse:
    return render(request, "admin/problem.html", None, {"title": refused.title, "detail": refused.detail},
                  refused.status_code)


def back(location: str) -> Response:
    """After a successful POST: see the result (303 makes the browser GET it)."""
    return redirect_303(location)


def redirect_303(location: str) -> Response:
    response = redirect(location)
    response.status_code = 303
    return response


def parse_time(text: str) -> dt.datetime | None:
    """An ISO 8601 time from a filter field (naive means UTC); None when empty or malformed."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def page_number(text: str | None) -> int:
    try:
        return max(1, min(int(text or 1), 100_000))
    except ValueError:
        return 1
