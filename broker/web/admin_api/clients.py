"""OAuth clients: list, show, pre-register (the secret is returned once), approve, disable, trust
(``broker.oauth.clients.register`` and ``broker.admin.clients``, as the CLI and the console)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from broker.admin import clients as client_admin
from broker.admin.queries import PAGE_SIZE
from broker.oauth import client_auth, clients
from broker.oauth.bearer import Caller
from broker.storage import clients as repo
from broker.storage.clients import ClientRow
from broker.storage.enums import ClientStatus
from broker.web.admin_api.common import BAD_BODY, Body, ColdRoute, Reader, Writer, actor, errors, fail, iso, not_found
from broker.web.deps import DbSession

T = TypeVar("T")
router = APIRouter(route_class=ColdRoute)  # each route's session on its own thread
NO_CLIENT = "No client with that id"
BEYOND = ("insufficient_scope: the token lacks admin:write; or access_denied: the client would get an admin scope "
          "or a capability (introspection, trusted, a machine grant) that the caller does not hold itself")


class ClientOut(BaseModel):
    client_id: str
    name: str
    kind: str = Field(description="preregistered, dcr or cimd")
    status: str = Field(description="active, pending or disabled")
    auth_method: str = Field(description="token_endpoint_auth_method (RFC 7591): the first registered method")
    auth_methods: list[str] = Field(description="every method the client may authenticate with")
    jwks_uri: str | None = Field(None, description="private_key_jwt: where its public keys are fetched")
    redirect_uris: list[str]
    grant_types: list[str]
    trusted: bool
    scopes: list[str]
    may_introspect: bool
    resource_servers: list[str] = Field(description="MCP server ids whose tokens it may introspect (RFC 7662 §4)")
    dpop_bound_access_tokens: bool = Field(description="its access tokens are DPoP-bound only (RFC 9449 §5.2)")
    created_at: str | None


class ClientPage(BaseModel):
    clients: list[ClientOut]
    page: int
    has_next: bool


class NewClientIn(Body):
    name: str = Field(min_length=1, max_length=200, description="shown to users on the consent page")
    client_id: str | None = Field(None, min_length=1, max_length=200, description="default: generated")
    redirect_uris: list[str] = Field([], max_length=50,
                                     description="exact redirect URIs (users sign in through this client)")
    confidential: bool | None = Field(None, description="authenticates at the token endpoint (default method: "
                                                        "client_secret_basic); implied by auth_methods")
    auth_methods: list[Literal["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]] = Field(
        [], max_length=3, description="how it authenticates; several allow each of them (default: client_secret_basic "
                                      "when confidential, none otherwise)")
    jwks: dict[str, Any] | None = Field(None, description="private_key_jwt: the client's public JWK Set")
    jwks_uri: str | None = Field(None, max_length=2048,
                                 description="private_key_jwt: an https URL serving its public JWK Set")
    client_credentials: bool = Field(False, description="may use the client_credentials grant (confidential only)")
    scopes: list[str] = Field([], max_length=50, description="scopes it may hold for itself, e.g. admin:read")
    introspect: bool = Field(False, description="may call the introspection endpoint (confidential only)")
    resource_servers: list[str] = Field([], max_length=100, description="with introspect: the MCP server ids whose "
                                        "tokens it may introspect; any other token introspects inactive")
    id_jag: bool = Field(False, description="may redeem ID-JAGs from trusted IdPs (jwt-bearer; confidential only)")
    token_exchange: bool = Field(False, description="may exchange ID tokens for ID-JAGs (confidential only)")
    trusted: bool = Field(False, description="skip the consent page (first-party clients)")
    dpop_bound_access_tokens: bool = Field(False, strict=True, description="DPoP-bound access tokens only: a token "
                                           "request without a DPoP proof is refused (RFC 9449 §5.2)")


class NewClientOut(ClientOut):
    client_secret: str | None = Field(description="shown once, never stored: keep it now")


class TrustedIn(Body):
    trusted: bool


class DpopIn(Body):
    dpop_bound_access_tokens: bool = Field(strict=True, description="true: DPoP-bound access tokens only")


class ResourceServersIn(Body):
    servers: list[str] = Field(max_length=100, description="MCP server ids; empty: none")


def describe(row: ClientRow) -> ClientOut:
    return ClientOut(client_id=row.id, name=row.name, kind=row.kind, status=row.status,
                     auth_method=row.token_endpoint_auth_method,
                     auth_methods=list(clients.registered_methods(row)), jwks_uri=row.jwks_uri,
                     redirect_uris=list(row.redirect_uris),
                     grant_types=list(row.grant_types), trusted=row.trusted, scopes=list(row.scopes),
                     may_introspect=row.may_introspect, resource_servers=list(row.resource_servers or ()),
                     dpop_bound_access_tokens=row.dpop_bound_access_tokens, created_at=iso(row.created_at))


def _row(session: DbSession, client_id: str) -> ClientRow:
    row = repo.get(session, client_id)
    if row is None:
        raise not_found(f"no client {client_id!r}")
    return row


@router.get("/clients", summary="List clients, newest first (admin:read)", response_model=ClientPage,
            responses={**errors(), **BAD_BODY})
def list_clients(session: DbSession, caller: Reader, page: int = Query(1, ge=1, le=100000),
                 status: str | None = Query(None, pattern="^(active|pending|disabled)$")) -> ClientPage:
    rows = repo.newest_first(session, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE + 1,
                             status=ClientStatus(status) if status else None)
    return ClientPage(clients=[describe(r) for r in rows[:PAGE_SIZE]], page=page, has_next=len(rows) > PAGE_SIZE)


@router.get("/clients/{client_id:path}", summary="One client (admin:read)", response_model=ClientOut,
            responses=errors(e404=NO_CLIENT))
def get_client(client_id: str, session: DbSession, caller: Reader) -> ClientOut:
    return describe(_row(session, client_id))


@router.post("/clients", summary="Pre-register a client; a confidential client's secret is returned once "
                                 "(admin:write)", response_model=NewClientOut, status_code=201,
             responses={**errors(e409="The client id is taken", e403=BEYOND), **BAD_BODY})
def add_client(body: NewClientIn, session: DbSession, caller: Writer) -> NewClientOut:
    try:
        auth = clients.operator_auth(body.auth_methods, confidential=body.confidential, jwks=body.jwks,
                                     jwks_uri=body.jwks_uri)
        grants = clients.preregistered_grants(
            redirect_uris=body.redirect_uris, client_credentials=body.client_credentials, id_jag=body.id_jag,
            token_exchange=body.token_exchange, introspect=body.introspect,
            confidential=auth.methods != (client_auth.NONE,))
    except ValueError as exc:
        raise fail(400, "invalid_request", str(exc)) from None
    wanted = client_admin.capabilities(grant_types=grants, may_introspect=body.introspect, trusted=body.trusted)
    _within_authority(session, caller, lambda authority: authority.check(body.scopes, wanted))
    if body.client_id is not None and repo.get(session, body.client_id) is not None:
        raise fail(409, "conflict", f"client id {body.client_id!r} is taken")
    try:
        new = clients.register(session, client_id=body.client_id, name=body.name, kind="preregistered",
                               redirect_uris=body.redirect_uris, grant_types=grants, trusted=body.trusted,
                               auth=auth, scopes=body.scopes, may_introspect=body.introspect, actor=actor(caller),
                               dpop_bound_access_tokens=body.dpop_bound_access_tokens,
                               resource_servers=client_admin.check_resource_servers(session, body.resource_servers))
    except ValueError as exc:
        raise fail(400, "invalid_request", str(exc)) from None
    return NewClientOut(**describe(new.row).model_dump(), client_secret=new.secret)


def _within_authority(session: DbSession, caller: Caller, change: Callable[[client_admin.Authority], T]) -> T:
    """Run ``change`` with the caller's authority: its token's scopes and its own client's capabilities."""
    own = repo.get(session, caller.client_id)
    authority = client_admin.Authority.of_client(own, caller.scopes) if own else client_admin.NOTHING
    try:
        return change(authority)
    except client_admin.BeyondAuthority as exc:
        raise fail(403, "access_denied", str(exc), missing=exc.missing) from None


def _change(session: DbSession, client_id: str, caller: Caller, change: str) -> ClientOut:
    row = _row(session, client_id)
    try:
        if change == "approve":
            row = _within_authority(session, caller, lambda authority: client_admin.approve(
                session, row, actor(caller), authority))
        else:
            row = client_admin.disable(session, row, actor(caller))
    except client_admin.InvalidChange as exc:
        raise fail(409, "conflict", str(exc)) from None
    return describe(row)


@router.post("/clients/{client_id:path}/approve", summary="Approve a client held for approval (admin:write)",
             response_model=ClientOut, responses=errors(e404=NO_CLIENT, e409="The client is not pending", e403=BEYOND))
def approve_client(client_id: str, session: DbSession, caller: Writer) -> ClientOut:
    return _change(session, client_id, caller, "approve")


@router.post("/clients/{client_id:path}/disable", summary="Disable a client: no new tokens, its tokens "
                                                          "introspect inactive (admin:write)",
             response_model=ClientOut, responses=errors(e404=NO_CLIENT, e409="The client is disabled already"))
def disable_client(client_id: str, session: DbSession, caller: Writer) -> ClientOut:
    return _change(session, client_id, caller, "disable")


@router.put("/clients/{client_id:path}/trusted", summary="Mark a client trusted (skips consent) or not "
                                                         "(admin:write)",
            response_model=ClientOut, responses={**errors(e404=NO_CLIENT, e403=BEYOND), **BAD_BODY})
def set_trusted(client_id: str, body: TrustedIn, session: DbSession, caller: Writer) -> ClientOut:
    row = _row(session, client_id)
    return describe(_within_authority(session, caller, lambda authority: client_admin.set_trusted(
        session, row, body.trusted, actor(caller), authority)))


@router.put("/clients/{client_id:path}/resource-servers", summary="Set the MCP servers whose tokens an "
                                                                  "introspecting client may introspect (admin:write)",
            response_model=ClientOut,
            responses={**errors(e404=NO_CLIENT, e409="The client may not introspect, or a server is unknown"),
                       **BAD_BODY})
def set_resource_servers(client_id: str, body: ResourceServersIn, session: DbSession, caller: Writer) -> ClientOut:
    return _set(session, client_id, lambda row: client_admin.set_resource_servers(session, row, body.servers,
                                                                                 actor(caller)))


@router.put("/clients/{client_id:path}/dpop", summary="Require DPoP-bound access tokens for a client, or stop "
                                                      "requiring them (admin:write)",
            response_model=ClientOut,
            responses={**errors(e404=NO_CLIENT, e409="A metadata-document client's setting comes from its document"),
                       **BAD_BODY})
def set_dpop(client_id: str, body: DpopIn, session: DbSession, caller: Writer) -> ClientOut:
    return _set(session, client_id, lambda row: client_admin.set_dpop_bound(session, row,
                                                                           body.dpop_bound_access_tokens,
                                                                           actor(caller)))


def _set(session: DbSession, client_id: str, change: Callable[[ClientRow], ClientRow]) -> ClientOut:
    """Apply ``change`` to the client; an ``InvalidChange`` is a 409 and nothing is written."""
    row = _row(session, client_id)
    try:
        row = change(row)
    except client_admin.InvalidChange as exc:
        raise fail(409, "conflict", str(exc)) from None
    return describe(row)
