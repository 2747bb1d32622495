"""MCP servers: list, create, edit, enable/disable (``broker.registry.admin``, as the CLI uses)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from broker.admin.sessions import MANAGE, VIEW, ConsoleUser
from broker.registry import admin as registry
from broker.storage import mcp_servers
from broker.storage.mcp_servers import ServerRow
from broker.web.admin.common import ConsoleRoute, NotFound, back, console_call, read_form, render
from broker.web.deps import State

router = APIRouter(prefix="/admin/servers", route_class=ConsoleRoute, include_in_schema=False)
FIELDS = ("id", "name", "description", "resource", "scopes", "default_scopes", "tags", "access_token_lifetime",
          "require_dpop")


def _form_of(row: ServerRow) -> dict[str, str]:
    return {"id": row.id, "name": row.name, "description": row.description, "resource": row.resource,
            "scopes": "\n".join(f"{s} {d}".rstrip() for s, d in row.scopes.items()),
            "default_scopes": " ".join(row.default_scopes), "tags": " ".join(row.tags),
            "access_token_lifetime": str(row.access_token_lifetime or ""),
            "require_dpop": "on" if row.require_dpop else ""}


def _spec(form: dict[str, str], server_id: str) -> tuple[registry.ServerSpec | None, dict[str, list[str]]]:
    """The form as a ``ServerSpec``, or the field errors (the registry checks the rest)."""
    errors: dict[str, list[str]] = {}
    scopes: dict[str, str] = {}
    for line in form.get("scopes", "").splitlines():
        name, _, description = line.strip().partition(" ")
        if name:
            scopes[name] = description.strip()
    lifetime: int | None = None
    if form.get("access_token_lifetime", "").strip():
        try:
            lifetime = int(form["access_token_lifetime"])
        except ValueError:
            errors["access_token_lifetime"] = ["a whole number of seconds, or empty for the default"]
    spec = registry.ServerSpec(id=server_id, name=form.get("name", "").strip(),
                               resource=form.get("resource", "").strip(),
                               scopes=scopes, default_scopes=form.get("default_scopes", "").split(),
                               description=form.get("description", "").strip(),
                               tags=form.get("tags", "").replace(",", " ").split(), access_token_lifetime=lifetime,
                               require_dpop=bool(form.get("require_dpop")))
    return (None if errors else spec), errors


def _field_errors(problems: list[str]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for problem in problems:
        field, _, message = problem.partition(": ")
        errors.setdefault(field.replace("-", "_"), []).append(message)
    return errors


@router.get("")
async def list_servers(request: Request, state: State) -> Response:
    def view(db: Session, console: ConsoleUser) -> Response:
        return render(request, "admin/servers.html", console, {"servers": mcp_servers.list_all(db), "nav": "servers"})

    return await console_call(request, state, VIEW, view)


@router.get("/new")
async def new_form(request: Request, state: State) -> Response:
    def view(db: Session, console: ConsoleUser) -> Response:
        return _form_page(request, console, None, {}, {}, 200)

    return await console_call(request, state, MANAGE, view)


def _form_page(request: Request, console: ConsoleUser, row: ServerRow | None, form: dict[str, str],
               errors: dict[str, list[str]], status: int) -> Response:
    values = {name: form.get(name, "") for name in FIELDS}
    return render(request, "admin/server_form.html", console, {"row": row, "form": values, "errors": errors,
                                                                "nav": "servers"}, status)


@router.post("/new")
async def create(request: Request, state: State) -> Response:
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        spec, errors = _spec(form, form.get("id", "").strip())
        if spec is not None:
            try:
                registry.add(db, spec, actor=console.actor, issuer=state.settings.issuer)
                return back(f"/admin/servers/{spec.id}?saved=1")
            except registry.InvalidServer as exc:
                errors = _field_errors(exc.problems)
        return _form_page(request, console, None, form, errors, 400)

    return await console_call(request, state, MANAGE, act, csrf=form.get("csrf_token"))


def _row(db: Session, server_id: str) -> ServerRow:
    row = mcp_servers.get(db, server_id)
    if row is None:
        raise NotFound("MCP server with that id")
    return row


@router.get("/{server_id}")
async def edit_form(server_id: str, request: Request, state: State) -> Response:
    def view(db: Session, console: ConsoleUser) -> Response:
        row = _row(db, server_id)
        return render(request, "admin/server_form.html", console,
                      {"row": row, "form": _form_of(row), "errors": {}, "nav": "servers",
                       "saved": request.query_params.get("saved")})

    return await console_call(request, state, VIEW, view)


@router.post("/{server_id}")
async def update(server_id: str, request: Request, state: State) -> Response:
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        row = _row(db, server_id)
        spec, errors = _spec(form, row.id)
        if spec is not None:
            try:
                registry.update(db, row, spec, actor=console.actor, issuer=state.settings.issuer)
                return back(f"/admin/servers/{row.id}?saved=1")
            except registry.InvalidServer as exc:  # refused before anything was written
                errors = _field_errors(exc.problems)
        return _form_page(request, console, row, {**form, "id": row.id}, errors, 400)

    return await console_call(request, state, MANAGE, act, csrf=form.get("csrf_token"))


@router.post("/{server_id}/enabled")
async def set_enabled(server_id: str, request: Request, state: State) -> Response:
    form = await read_form(request)

    def act(db: Session, console: ConsoleUser) -> Response:
        registry.set_enabled(db, _row(db, server_id), form.get("enabled") == "true", actor=console.actor)
        return back(f"/admin/servers/{server_id}?saved=1")

    return await console_call(request, state, MANAGE, act, csrf=form.get("csrf_token"))
