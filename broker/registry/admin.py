"""Registering and changing MCP servers (the operations the CLI, admin API and console share).

Every input is validated here, with one clear message per problem; nothing is written unless
all of it is valid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from broker import audit
from broker.registry.resources import InvalidResource, canonical_resource
from broker.registry.servers import ADMIN_API_ID, USERINFO_ID, builtin_resources
from broker.storage import mcp_servers
from broker.storage.mcp_servers import ServerRow
from broker.storage.models import utcnow

SERVER_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SCOPE = re.compile(r"^[\x21\x23-\x5B\x5D-\x7E]{1,128}$")  # RFC 6749 §3.3 scope-token


class InvalidServer(ValueError):
    """One or more problems with a server definition; ``problems`` lists each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class ServerConflict(InvalidServer):
    """The definition is valid but clashes with another server (its id or resource is taken)."""


@dataclass(frozen=True)
class ServerSpec:
    id: str
    name: str
    resource: str
    scopes: Mapping[str, str]
    default_scopes: Sequence[str] = ()
    description: str = ""
    tags: Sequence[str] = ()
    access_token_lifetime: int | None = None
    require_dpop: bool = False  # tokens for it are DPoP-bound only (RFC 9449): the broker issues no bearer token


def add(session: Session, spec: ServerSpec, actor: str = "system", *, issuer: str = "") -> ServerRow:
    """Register a server; ``issuer`` names the broker, whose own targets' resources no server may take."""
    resource = _validate(spec, issuer)
    if mcp_servers.get(session, spec.id) is not None:
        raise ServerConflict([f"id: a server {spec.id!r} exists already"])
    if mcp_servers.by_resource(session, resource) is not None:
        raise ServerConflict([f"resource: {resource} belongs to another server"])
    now = utcnow()
    row = ServerRow(id=spec.id, name=spec.name, description=spec.description, resource=resource,
                    scopes=dict(spec.scopes), default_scopes=list(spec.default_scopes), tags=sorted(set(spec.tags)),
                    access_token_lifetime=spec.access_token_lifetime, enabled=True, require_dpop=spec.require_dpop,
                    created_at=now, updated_at=now)
    mcp_servers.add(session, row)
    audit.record(session, "server.added", actor=actor, server_id=row.id, data={"after": snapshot(row)})
    return row


def update(session: Session, row: ServerRow, spec: ServerSpec, actor: str = "system", *,
           issuer: str = "") -> ServerRow:
    resource = _validate(spec, issuer)
    other = mcp_servers.by_resource(session, resource)
    if other is not None and other.id != row.id:
        raise ServerConflict([f"resource: {resource} belongs to server {other.id!r}"])
    changed = row._replace(name=spec.name, description=spec.description, resource=resource, scopes=dict(spec.scopes),
                           default_scopes=list(spec.default_scopes), tags=sorted(set(spec.tags)),
                           access_token_lifetime=spec.access_token_lifetime, require_dpop=spec.require_dpop,
                           updated_at=utcnow())
    mcp_servers.save(session, changed)
    audit.record(session, "server.updated", actor=actor, server_id=row.id,
                 data={"before": snapshot(row), "after": snapshot(changed)})
    return changed


def set_enabled(session: Session, row: ServerRow, enabled: bool, actor: str = "system") -> ServerRow:
    """Disabling stops new tokens, refresh, and introspection of existing tokens for the server."""
    changed = row._replace(enabled=enabled, updated_at=utcnow())
    mcp_servers.save(session, changed)
    audit.record(session, "server.enabled" if enabled else "server.disabled", actor=actor, server_id=row.id,
                 data={"before": snapshot(row), "after": snapshot(changed)})
    return changed


def snapshot(row: ServerRow) -> dict[str, object]:
    return {"name": row.name, "resource": row.resource, "enabled": row.enabled, "scopes": dict(row.scopes),
            "default_scopes": list(row.default_scopes), "tags": list(row.tags), "description": row.description,
            "access_token_lifetime": row.access_token_lifetime, "require_dpop": row.require_dpop}


def _validate(spec: ServerSpec, issuer: str) -> str:
    problems = []
    if spec.id in (ADMIN_API_ID, USERINFO_ID):
        problems.append(f"id: {spec.id!r} is reserved for a built-in target")
    elif not SERVER_ID.match(spec.id):
        problems.append("id: use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit")
    if not spec.name.strip():
        problems.append("name: required")
    resource = ""
    try:
        resource = canonical_resource(spec.resource)
    except InvalidResource as exc:
        problems.append(f"resource: {exc}")
    if issuer and resource in builtin_resources(issuer):  # a token for it would be one for the broker itself
        problems.append(f"resource: {resource} is the broker's own; register the MCP server's URL")
    if not spec.scopes:
        problems.append("scopes: at least one scope")
    problems += [f"scopes: {s!r} is not a valid scope name" for s in spec.scopes if not SCOPE.match(s)]
    problems += [f"default-scopes: {s!r} is not one of the server's scopes" for s in spec.default_scopes
                 if s not in spec.scopes]
    if spec.access_token_lifetime is not None and not 30 <= spec.access_token_lifetime <= 86400:
        problems.append("access-token-lifetime: between 30 and 86400 seconds")
    if problems:
        raise InvalidServer(problems)
    return resource
