"""Clients: list with registration kind and authentication methods, pre-register one (its secret shown once),
approve pending DCR clients, mark trusted, disable."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from broker.admin import clients as client_admin
from broker.admin.queries import PAGE_SIZE
from broker.admin.sessions import MANAGE, VIEW, ConsoleUser
from broker.oauth import client_auth, clients
from broker.storage import clients as repo
from broker.storage.enums import ClientKind, ClientStatus
from broker.web.admin.common import (
    ConsoleRoute,
    NotFound,
    Refused,
    back,
    console_call,
    page_number,
    read_form,
    render,
)
from broker.web.deps import State

router = APIRouter(prefix="/admin/clients", route_class=ConsoleRoute, include_in_schema=False)
FIELDS = ("name", "client_id", "redirect_uris", "jwks", "jwks_uri", "scopes")
FLAGS = ("client_credentials", "id_jag", "token_exchange", "introspect", "trusted", "dpop_bound_access_tokens")


@router.get("")
async def list_clients(request: Request, state: State) -> Response:
    number = page_number(request.query_params.get("page"))
    status = request.query_params.get("status") or ""

    def view(db: Session, console: ConsoleUser) -> Response:
        rows = repo.newest_first(db, offset=(number - 1) * PAGE_SIZE, limit=PAGE_SIZE + 1,
                                 status=ClientStatus(status) if status in tuple(ClientStatus) else None)
        return render(request, "admin/clients.html", console,
                      {"clients": rows[:PAGE_SIZE], "page": number, "has_next": len(rows) > PAGE_SIZE,
                       "status": status, "cimd": state.settings.cimd, "nav": "clients",
                       "methods_of": clients.registered_methods})

    return await console_call(request, state, VIEW, view)


@router.post("/action")
async def act_on_client(request: Request, state: State) -> Response:
    """One form for every client action (client ids may be URLs, so they travel in the body)."""
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        row = repo.get(db, form.get("client_id", ""))
        if row is None:
            raise NotFound("client with that id")
        action = form.get("action")
        try:
            if action == "approve":
                client_admin.approve(db, row, console.actor)
            elif action == "disable":
                client_admin.disable(db, row, console.actor)
            elif action in ("trust", "distrust"):
                client_admin.set_trusted(db, row, action == "trust", console.actor)
            elif action in ("dpop-on", "dpop-off"):
                client_admin.set_dpop_bound(db, row, action == "dpop-on", console.actor)
            else:
                raise Refused("Unknown action", "The form asked for an action the console does not know.", 400)
        except client_admin.InvalidChange as exc:
            raise Refused("Nothing changed", str(exc), 409) from None
        return back("/admin/clients")

    return await console_call(request, state, MANAGE, act, csrf=form.get("csrf_token"))


@router.get("/new")
async def new_form(request: Request, state: State) -> Response:
    def view(db: Session, console: ConsoleUser) -> Response:
        return _form_page(request, console, {"method_none": "on"}, None, 200)

    return await console_call(request, state, MANAGE, view)


@router.post("/new")
async def create(request: Request, state: State) -> Response:
    """Pre-register a client as ``broker clients add`` does; the new secret is shown on this response only."""
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        try:
            new = clients.register(db, actor=console.actor, kind=ClientKind.PREREGISTERED, **_registration(form))
        except ValueError as exc:
            db.rollback()  # nothing of a refused registration stays
            return _form_page(request, console, form, str(exc), 400)
        return render(request, "admin/client_created.html", console,
                      {"client": new.row, "secret": new.secret, "methods": clients.registered_methods(new.row),
                       "nav": "clients"})

    return await console_call(request, state, MANAGE, act, csrf=form.get("csrf_token"))


def _registration(form: dict[str, str]) -> dict[str, Any]:
    """``clients.register``'s arguments from the form; ``ValueError`` saying what is wrong."""
    methods = [m for m in clients.AUTH_METHODS if form.get(f"method_{m}")]
    auth = clients.operator_auth(methods, confidential=None, jwks=_json_field(form, "jwks"),
                                 jwks_uri=form.get("jwks_uri", "").strip() or None)
    redirect_uris = form.get("redirect_uris", "").split()
    grants = clients.preregistered_grants(
        redirect_uris=redirect_uris, client_credentials=bool(form.get("client_credentials")),
        id_jag=bool(form.get("id_jag")), token_exchange=bool(form.get("token_exchange")),
        introspect=bool(form.get("introspect")), confidential=auth.methods != (client_auth.NONE,))
    name = form.get("name", "").strip()
    if not name or len(name) > 200:
        raise ValueError("a name of 1 to 200 characters is required (users see it on the consent page)")
    return {"name": name, "client_id": form.get("client_id", "").strip() or None, "redirect_uris": redirect_uris,
            "auth": auth, "grant_types": grants, "trusted": bool(form.get("trusted")),
            "scopes": form.get("scopes", "").split(), "may_introspect": bool(form.get("introspect")),
            "dpop_bound_access_tokens": bool(form.get("dpop_bound_access_tokens"))}


def _json_field(form: dict[str, str], name: str) -> Any:
    text = form.get(name, "").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise ValueError(f"{name} is not valid JSON (a JWK Set: {{\"keys\": [...]}})") from None


def _form_page(request: Request, console: ConsoleUser, form: dict[str, str], error: str | None,
               status: int) -> Response:
    values = {name: form.get(name, "") for name in FIELDS}
    checked = {name for name in (*FLAGS, *(f"method_{m}" for m in clients.AUTH_METHODS)) if form.get(name)}
    return render(request, "admin/client_form.html", console,
                  {"form": values, "checked": checked, "error": error, "methods": clients.AUTH_METHODS,
                   "nav": "clients"}, status)
