"""Keys (list, rotate) and Settings (the effective configuration, secrets masked)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from broker.admin import keys as key_admin
from broker.admin.sessions import MANAGE, VIEW, ConsoleUser
from broker.config import provenance
from broker.storage import signing_keys
from broker.storage.models import utcnow
from broker.web.admin.common import ConsoleRoute, back, console_call, read_form, render
from broker.web.deps import State

router = APIRouter(prefix="/admin", route_class=ConsoleRoute, include_in_schema=False)


@router.get("/keys")
async def keys(request: Request, state: State) -> Response:
    def view(db: Session, console: ConsoleUser) -> Response:
        now, grace = utcnow(), key_admin.grace(db, state.settings)
        rows = [(k, key_admin.state(k, now, grace)) for k in signing_keys.all_keys(db)]
        return render(request, "admin/keys.html", console,
                      {"keys": rows, "delay": state.settings.keys.activation_delay, "nav": "keys"})

    return await console_call(request, state, VIEW, view)


@router.post("/keys/rotate")
async def rotate(request: Request, state: State) -> Response:
    """``KeyRing.rotate``, as ``broker keys rotate`` (``now``: sign with it at once, after a compromise)."""
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        delay = 0 if form.get("now") == "1" else state.settings.keys.activation_delay
        key_admin.rotate(db, state.keyring, delay, console.actor)
        return back("/admin/keys")

    return await console_call(request, state, MANAGE, act, csrf=form.get("csrf_token"))


@router.get("/settings")
async def settings(request: Request, state: State) -> Response:
    """Every setting: its effective value, where it came from, and its default where it differs."""
    changed_only = request.query_params.get("changed") == "1"

    def view(db: Session, console: ConsoleUser) -> Response:
        found = [e for e in provenance.entries(state.settings) if e.differs or not changed_only]
        sections: dict[str, list[provenance.Entry]] = {}
        for entry in found:
            section = entry.key.split(".")[0].split("[")[0] if "." in entry.key else "general"
            sections.setdefault(section, []).append(entry)
        return render(request, "admin/settings.html", console,
                      {"sections": list(sections.items()), "changed_only": changed_only,
                       "differing": sum(e.differs for e in found), "nav": "settings"})

    return await console_call(request, state, VIEW, view)
