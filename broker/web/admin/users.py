"""Users: search, detail (groups, IdP, reachable servers, live sessions), offboard with a reason, restore."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from broker.admin import queries
from broker.admin.sessions import OFFBOARD, VIEW, ConsoleUser
from broker.lifecycle import offboarding, sessions
from broker.registry import policies
from broker.registry import servers as registry
from broker.storage import mcp_servers
from broker.storage import users as user_repo
from broker.storage.models import utcnow
from broker.storage.users import UserRow
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

router = APIRouter(prefix="/admin/users", route_class=ConsoleRoute, include_in_schema=False)


@router.get("")
async def list_users(request: Request, state: State) -> Response:
    text = (request.query_params.get("q") or "").strip()[:320]
    status = request.query_params.get("status") or ""
    number = page_number(request.query_params.get("page"))

    def view(db: Session, console: ConsoleUser) -> Response:
        result = queries.search_users(db, text, number, status)
        return render(request, "admin/users.html", console, {"result": result, "q": text, "status": status,
                                                              "nav": "users"})

    return await console_call(request, state, VIEW, view)


def _user(db: Session, user_id: str) -> UserRow:
    user = user_repo.row(db, user_id)
    if user is None:
        raise NotFound("user with that id")
    return user


def _reach(db: Session, state: State, user: UserRow) -> list[tuple[str, str, list[str]]]:
    """Every enabled server with what the policy in force gives this user (any client): (id, name, scopes)."""
    compiled = state.oauth.policy.compiled(db) if hasattr(state.oauth.policy, "compiled") else None
    if compiled is None:
        compiled = policies.StoredPolicy().compiled(db)
    out = []
    for row in mcp_servers.list_all(db):
        if row.enabled:
            decision = policies.explain(db, compiled, user, registry.from_row(row)).decision
            out.append((row.id, row.name, sorted(decision.scopes) if decision.allowed else []))
    return out


@router.get("/{user_id}")
async def detail(user_id: str, request: Request, state: State) -> Response:
    def view(db: Session, console: ConsoleUser) -> Response:
        user = _user(db, user_id)
        info = queries.user_detail(db, user, user_repo.group_names(db, user.id))
        return render(request, "admin/user.html", console, {"info": info, "reach": _reach(db, state, user),
                                                             "done": request.query_params.get("done"),
                                                             "nav": "users"})

    return await console_call(request, state, VIEW, view)


@router.get("/{user_id}/offboard")
async def confirm(user_id: str, request: Request, state: State) -> Response:
    def view(db: Session, console: ConsoleUser) -> Response:
        user = _user(db, user_id)
        info = queries.user_detail(db, user, user_repo.group_names(db, user.id))
        return render(request, "admin/offboard.html", console, {"info": info, "errors": {}, "reason": "",
                                                                 "nav": "users"})

    return await console_call(request, state, OFFBOARD, view)


@router.post("/{user_id}/offboard")
async def offboard(user_id: str, request: Request, state: State) -> Response:
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        user = _user(db, user_id)
        reason = form.get("reason", "").strip()
        errors = {}
        if not reason:
            errors["reason"] = ["say why: it is kept in the audit log"]
        if form.get("confirm") != user.email and form.get("confirm") != user.id:
            errors["confirm"] = ["type the user's email (or id) exactly, to confirm"]
        if errors:
            info = queries.user_detail(db, user, user_repo.group_names(db, user.id))
            return render(request, "admin/offboard.html", console,
                          {"info": info, "errors": errors, "reason": form.get("reason", ""),
                           "confirm": form.get("confirm", ""), "nav": "users"}, 400)
        now = utcnow()
        offboarding.revoke_user(db, user.id, reason=reason[:1000], actor=console.actor, now=now, source="console")
        return back(f"/admin/users/{user.id}?done=offboarded")

    return await console_call(request, state, OFFBOARD, act, csrf=form.get("csrf_token"))


@router.get("/{user_id}/sessions/{family_id}")
async def confirm_session_revoke(user_id: str, family_id: str, request: Request, state: State) -> Response:
    """What revoking this one session ends, and a button to do it."""
    def view(db: Session, console: ConsoleUser) -> Response:
        user = _user(db, user_id)
        info = queries.user_detail(db, user, user_repo.group_names(db, user.id))
        family = next((f for f in info.families if f.id == family_id), None)
        if family is None:
            raise NotFound("live session with that id for this user")
        return render(request, "admin/session_revoke.html", console, {"info": info, "family": family,
                                                                       "nav": "users"})

    return await console_call(request, state, OFFBOARD, view)


@router.post("/{user_id}/sessions/{family_id}")
async def revoke_session(user_id: str, family_id: str, request: Request, state: State) -> Response:
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        user = _user(db, user_id)
        reason = form.get("reason", "").strip() or "revoked from the admin console"
        try:
            sessions.revoke_session(db, user.id, family_id, reason=reason[:1000], actor=console.actor, now=utcnow(),
                                    source="console")
        except sessions.UnknownSession:
            raise Refused("Nothing to revoke", "This session is not live any more (revoked or ended).", 409) from None
        return back(f"/admin/users/{user.id}?done=session-revoked")

    return await console_call(request, state, OFFBOARD, act, csrf=form.get("csrf_token"))


@router.post("/{user_id}/restore")
async def restore(user_id: str, request: Request, state: State) -> Response:
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        user = _user(db, user_id)
        reason = form.get("reason", "").strip() or "restored from the admin console"
        offboarding.restore_user(db, user.id, reason=reason[:1000], actor=console.actor, now=utcnow())
        return back(f"/admin/users/{user.id}?done=restored")

    return await console_call(request, state, OFFBOARD, act, csrf=form.get("csrf_token"))
