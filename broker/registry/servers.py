"""Looking up MCP servers by id or resource URI, as the protocol core sees them.

The broker's own admin API is a built-in resource (``<issuer>/admin/api``) with admin scopes;
only clients explicitly granted those scopes can get tokens for it (client credentials).
Sign-in is a built-in pseudo server (``<issuer>/userinfo``, the OIDC scopes): the target of an
authorization request that names no ``resource`` but asks for ``openid``. A client never names it
(``resolve`` does not return it for a client's ``resource``); the broker picks it.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from broker.policy.layered import SIGN_IN_TARGET
from broker.registry.resources import InvalidResource, canonical_resource
from broker.storage import changes, mcp_servers
from broker.storage.hot import Tx

ADMIN_API_ID = "broker-admin-api"
ADMIN_SCOPES = {
    "admin:read": "Read the broker's configuration, users, clients and audit log",
    "admin:write": "Change MCP servers, clients and policy",
    "security:revoke": "Offboard users and revoke their tokens",
}
USERINFO_ID = SIGN_IN_TARGET
USERINFO_SCOPES = {  # OIDC Core §5.4: what each scope releases
    "openid": "Sign you in with your account at this broker (your user id)",
    "profile": "See your name",
    "email": "See your email address and whether it is verified",
}


class UnknownResource(LookupError):
    """The resource names no registered, enabled MCP server."""


@dataclass(frozen=True)
class Server:
    """An MCP server (or the admin API) as a token audience."""

    id: str
    name: str
    resource: str
    scopes: dict[str, str]
    default_scopes: tuple[str, ...]
    tags: tuple[str, ...] = ()
    access_token_lifetime: int | None = None
    enabled: bool = True
    builtin: bool = field(default=False, compare=False)
    require_dpop: bool = False  # the broker issues tokens for it DPoP-bound only (RFC 9449), never bearer


def from_row(row: mcp_servers.ServerRow) -> Server:
    return Server(id=row.id, name=row.name, resource=row.resource, scopes=dict(row.scopes),
                  default_scopes=tuple(row.default_scopes), tags=tuple(row.tags),
                  access_token_lifetime=row.access_token_lifetime, enabled=row.enabled, require_dpop=row.require_dpop)


def admin_api(issuer: str) -> Server:
    return Server(id=ADMIN_API_ID, name="mcp-auth-broker admin API", resource=f"{issuer}/admin/api",
                  scopes=dict(ADMIN_SCOPES), default_scopes=(), builtin=True)


def userinfo(issuer: str) -> Server:
    return Server(id=USERINFO_ID, name="Sign-in (OpenID Connect)", resource=f"{issuer}/userinfo",
                  scopes=dict(USERINFO_SCOPES), default_scopes=("openid",), builtin=True)


def builtin_resources(issuer: str) -> tuple[str, ...]:
    """The audiences of the broker's own targets, which no registered server may take."""
    return admin_api(issuer).resource, userinfo(issuer).resource


def resolve(session: Session, resource: str, issuer: str, *, include_admin_api: bool = False,
            include_sign_in: bool = False) -> Server:
    """The enabled server a ``resource`` parameter names after canonicalisation, or ``UnknownResource``.

    ``include_sign_in`` only for a resource the broker stored itself (a code's, a family's, a token's
    ``aud``), never for one a client sent: sign-in is chosen by the absence of ``resource``.
    """
    return resolve_in(_cached(session), resource, issuer, include_admin_api=include_admin_api,
                      include_sign_in=include_sign_in)


def resolve_in(registry: Registry, resource: str, issuer: str, *, include_admin_api: bool = False,
               include_sign_in: bool = False) -> Server:
    """``resolve`` in a registry the caller holds (``registry_hot``)."""
    try:
        canonical = canonical_resource(resource)
    except InvalidResource as exc:
        raise UnknownResource(str(exc)) from None
    if canonical == f"{issuer}/admin/api":  # admin_api(issuer).resource
        if include_admin_api:
            return admin_api(issuer)
        raise UnknownResource("the resource is not a registered MCP server")  # even if one was registered there
    if canonical == f"{issuer}/userinfo":  # userinfo(issuer).resource
        if include_sign_in:
            return userinfo(issuer)
        raise UnknownResource("the resource is not a registered MCP server")  # even if one was registered there
    server = registry.by_resource.get(canonical)
    if server is None or not server.enabled:
        raise UnknownResource("the resource is not a registered MCP server")
    return server


@dataclass(frozen=True)
class Registry:
    """Every registered server, enabled or not, by resource URI and by id."""

    by_resource: dict[str, Server]
    by_id: dict[str, Server]


class _Cache:
    """The registry of one database; reread per ``changes.Recheck``."""

    RECHECK_SECONDS = 1.0  # how long a change made by another instance takes to be seen here

    def __init__(self) -> None:
        self.recheck = changes.Recheck("mcp_servers", self.RECHECK_SECONDS)
        self.registry = Registry({}, {})  # swapped as one

    def current(self, session: Session) -> Registry:
        token = self.recheck.start()
        if token is not None:
            self._keep(mcp_servers.list_all(session), token)
        return self.registry

    async def current_hot(self, tx: Tx) -> Registry:
        token = self.recheck.start()
        if token is not None:
            self._keep(await mcp_servers.list_all_hot(tx), token)
        return self.registry

    def _keep(self, rows: list[mcp_servers.ServerRow], token: int) -> None:
        every = [from_row(row) for row in rows]
        self.registry = Registry({server.resource: server for server in every}, {server.id: server for server in every})
        self.recheck.done(token)


_caches: weakref.WeakKeyDictionary[Any, _Cache] = weakref.WeakKeyDictionary()


def _cache(key: Any) -> _Cache:
    cache = _caches.get(key)
    if cache is None:
        cache = _caches.setdefault(key, _Cache())
    return cache


def _cached(session: Session) -> Registry:
    """The cached registry of the database ``session`` talks to (one per engine)."""
    return _cache(session.get_bind()).current(session)


async def registry_hot(tx: Tx) -> Registry:
    """The cached registry, read again in ``tx`` when it is due."""
    return await _cache(tx.cache_key).current_hot(tx)


def fresh_registry(cache_key: Any) -> Registry | None:
    """The cached registry while it needs no fresh read, else None."""
    cache = _cache(cache_key)
    return cache.registry if cache.recheck.start() is None else None


def get(session: Session, server_id: str, issuer: str) -> Server | None:
    """A server by id, enabled or not, from the cached registry (a write by this process shows at once)."""
    if server_id == ADMIN_API_ID:
        return admin_api(issuer)
    if server_id == USERINFO_ID:
        return userinfo(issuer)
    return _cached(session).by_id.get(server_id)


def all_scopes(session: Session) -> list[str]:
    """Every scope of every enabled server (for ``scopes_supported``), from the cached registry."""
    return scopes_of(_cached(session))


def scopes_of(registry: Registry) -> list[str]:
    return sorted({scope for server in registry.by_resource.values() if server.enabled for scope in server.scopes})
