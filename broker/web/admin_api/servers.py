"""MCP servers: list, show, create, change, disable and enable (``broker.registry.admin``, as the CLI
and the console)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from broker.registry import admin as registry
from broker.storage import mcp_servers
from broker.storage.mcp_servers import ServerRow
from broker.web.admin_api.common import BAD_BODY, Body, ColdRoute, Reader, Writer, actor, errors, fail, iso, not_found
from broker.web.deps import DbSession, State

router = APIRouter(route_class=ColdRoute)  # each route's session on its own thread
NO_SERVER = "No MCP server with that id"


class ServerOut(BaseModel):
    id: str
    name: str
    description: str
    resource: str
    scopes: dict[str, str]
    default_scopes: list[str]
    tags: list[str]
    access_token_lifetime: int | None
    enabled: bool
    require_dpop: bool = Field(description="tokens for it are DPoP-bound only (RFC 9449): no bearer token is issued")
    created_at: str | None
    updated_at: str | None


class ServerIn(Body):
    id: str = Field(max_length=64, description="1-63 lower-case letters, digits, '-' or '_'")
    name: str = Field(max_length=200)
    resource: str = Field(max_length=2048, description="the MCP server's canonical URI (RFC 8707 resource)")
    scopes: dict[str, str] = Field(max_length=500, description="scope name -> description")
    default_scopes: list[str] = Field([], max_length=500)
    description: str = Field("", max_length=10_000)
    tags: list[str] = Field([], max_length=100)
    access_token_lifetime: int | None = Field(None, description="seconds (30-86400); null: the default")
    require_dpop: bool = Field(False, strict=True, description="issue DPoP-bound tokens only (RFC 9449): a token "
                               "request without a DPoP proof is refused")


class ServerPatch(Body):
    """Only the fields given change (``access_token_lifetime: null`` goes back to the default)."""

    name: str | None = Field(None, max_length=200)
    resource: str | None = Field(None, max_length=2048)
    scopes: dict[str, str] | None = Field(None, max_length=500)
    default_scopes: list[str] | None = Field(None, max_length=500)
    description: str | None = Field(None, max_length=10_000)
    tags: list[str] | None = Field(None, max_length=100)
    access_token_lifetime: int | None = None
    require_dpop: bool | None = Field(None, strict=True, description="true: DPoP-bound tokens only")


def describe(row: ServerRow) -> ServerOut:
    return ServerOut(id=row.id, name=row.name, description=row.description, resource=row.resource,
                     scopes=dict(row.scopes), default_scopes=list(row.default_scopes), tags=list(row.tags),
                     access_token_lifetime=row.access_token_lifetime, enabled=row.enabled,
                     require_dpop=row.require_dpop, created_at=iso(row.created_at), updated_at=iso(row.updated_at))


def _row(session: DbSession, server_id: str) -> ServerRow:
    row = mcp_servers.get(session, server_id)
    if row is None:
        raise not_found(f"no MCP server {server_id!r}")
    return row


def _refused(exc: registry.InvalidServer) -> Exception:
    if isinstance(exc, registry.ServerConflict):
        return fail(409, "conflict", "; ".join(exc.problems), problems=exc.problems)
    return fail(400, "invalid_request", str(exc), problems=exc.problems)


@router.get("/servers", summary="List MCP servers (admin:read)", response_model=list[ServerOut],
            responses=errors())
def list_servers(session: DbSession, caller: Reader) -> list[ServerOut]:
    return [describe(row) for row in mcp_servers.list_all(session)]


@router.get("/servers/{server_id}", summary="One MCP server (admin:read)", response_model=ServerOut,
            responses=errors(e404=NO_SERVER))
def get_server(server_id: str, session: DbSession, caller: Reader) -> ServerOut:
    return describe(_row(session, server_id))


@router.post("/servers", summary="Register an MCP server (admin:write)", response_model=ServerOut,
             status_code=201, responses={**errors(e409="A server with that id or resource exists"), **BAD_BODY})
def add_server(body: ServerIn, session: DbSession, caller: Writer, state: State) -> ServerOut:
    spec = registry.ServerSpec(**body.model_dump())
    try:
        return describe(registry.add(session, spec, actor=actor(caller), issuer=state.settings.issuer))
    except registry.InvalidServer as exc:
        raise _refused(exc) from None


@router.patch("/servers/{server_id}", summary="Change an MCP server (admin:write)", response_model=ServerOut,
              responses={**errors(e404=NO_SERVER, e409="The resource belongs to another server"), **BAD_BODY})
def update_server(server_id: str, body: ServerPatch, session: DbSession, caller: Writer,
                  state: State) -> ServerOut:
    row = _row(session, server_id)
    current = {"name": row.name, "resource": row.resource, "scopes": dict(row.scopes),
               "default_scopes": list(row.default_scopes), "description": row.description, "tags": list(row.tags),
               "access_token_lifetime": row.access_token_lifetime, "require_dpop": row.require_dpop}
    given = {k: v for k, v in body.model_dump(exclude_unset=True).items()
             if v is not None or k == "access_token_lifetime"}  # null elsewhere: leave as is
    spec = registry.ServerSpec(id=row.id, **{**current, **given})
    try:
        return describe(registry.update(session, row, spec, actor=actor(caller), issuer=state.settings.issuer))
    except registry.InvalidServer as exc:
        raise _refused(exc) from None


@router.post("/servers/{server_id}/disable", summary="Disable an MCP server: no new tokens (admin:write)",
             response_model=ServerOut, responses=errors(e404=NO_SERVER))
def disable_server(server_id: str, session: DbSession, caller: Writer) -> ServerOut:
    return describe(registry.set_enabled(session, _row(session, server_id), False, actor=actor(caller)))


@router.post("/servers/{server_id}/enable", summary="Enable an MCP server (admin:write)",
             response_model=ServerOut, responses=errors(e404=NO_SERVER))
def enable_server(server_id: str, session: DbSession, caller: Writer) -> ServerOut:
    return describe(registry.set_enabled(session, _row(session, server_id), True, actor=actor(caller)))
