"""Clients: list with registration kind, approve pending DCR clients, mark trusted, disable."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.admin import clients as client_admin
from broker.admin.queries import PAGE_SIZE
from broker.admin.sessions import MANAGE, VIEW, ConsoleUser
from broker.storage import clients as repo
from broker.storage.models import Client
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


@router.get("")
async def list_clients(request: Request, state: State) -> Response:
    number = page_number(request.query_params.get("page"))
    status = request.query_params.get("status") or ""

    def view(db: Session, console: ConsoleUser) -> Response:
        query = select(Client)
        if status in ("active", "pending", "disabled"):
            query = query.where(Client.status == status)
        rows = list(db.scalars(query.order_by(Client.created_at.desc(), Client.id)
                               .offset((number - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)))
        return render(request, "admin/clients.html", console,
                      {"clients": rows[:PAGE_SIZE], "page": number, "has_next": len(rows) > PAGE_SIZE,
                       "status": status, "cimd": state.settings.cimd, "nav": "clients"})

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
            else:
                raise Refused("Unknown action", "The form asked for an action the console does not know.", 400)
        except client_admin.InvalidChange as exc:
            raise Refused("Nothing changed", str(exc), 409) from None
        return back("/admin/clients")

    return await console_call(request, state, MANAGE, act, csrf=form.get("csrf_token"))
