"""Client status changes (approve, disable, trust), with before/after in the audit log, and the rule that
no caller hands a client more than it holds itself (``Authority``).

The same steps ``broker clients approve|disable`` performs; the console calls these. Each change returns the
client as it now is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from broker import audit
from broker.oauth.clients import CONFIDENTIAL_GRANTS
from broker.registry.servers import ADMIN_SCOPES
from broker.storage import clients as repo
from broker.storage import mcp_servers
from broker.storage.clients import ClientRow
from broker.storage.enums import ClientKind, ClientStatus, RevocationKind
from broker.storage.models import Revocation, utcnow

# Scopes of the broker's own API: whoever grants one to a client must hold it (today's and any later one).
ADMIN_SCOPE_PREFIXES = ("admin:", "security:")
TRUSTED, INTROSPECT = "trusted", "introspect"


class InvalidChange(ValueError):
    pass


class BeyondAuthority(PermissionError):
    """The caller asked to give a client a scope or capability it does not hold itself."""

    def __init__(self, missing: Iterable[str]):
        self.missing = sorted(missing)
        super().__init__("a caller cannot give a client what it does not hold itself: " + ", ".join(self.missing))


def is_admin_scope(scope: str) -> bool:
    return scope in ADMIN_SCOPES or scope.startswith(ADMIN_SCOPE_PREFIXES)


def capabilities(*, grant_types: Iterable[str], may_introspect: bool, trusted: bool) -> frozenset[str]:
    """What a client may do beyond signing users in with their consent: machine grants, introspection
    (and the revocation feed), skipping consent."""
    held = {grant for grant in grant_types if grant in CONFIDENTIAL_GRANTS}
    return frozenset(held | ({INTROSPECT} if may_introspect else set()) | ({TRUSTED} if trusted else set()))


def capabilities_of(row: ClientRow) -> frozenset[str]:
    return capabilities(grant_types=row.grant_types, may_introspect=row.may_introspect, trusted=row.trusted)


@dataclass(frozen=True)
class Authority:
    """What a caller may hand to a client it creates, approves or changes; None means everything (an operator
    at the CLI or a console admin). An admin API caller holds its token's scopes and its own client's
    capabilities, so ``admin:write`` alone can never mint ``admin:read``, ``security:*`` or an introspecting
    or trusted client."""

    scopes: frozenset[str] | None = None
    capabilities: frozenset[str] | None = None

    @classmethod
    def of_client(cls, row: ClientRow, token_scopes: Iterable[str]) -> Authority:
        return cls(frozenset(token_scopes), capabilities_of(row) if row.status == ClientStatus.ACTIVE else frozenset())

    def check(self, scopes: Iterable[str], wanted: Iterable[str]) -> None:
        """Raise ``BeyondAuthority`` naming every admin scope and capability asked for but not held."""
        missing = set()
        if self.scopes is not None:
            missing |= {s for s in scopes if is_admin_scope(s) and s not in self.scopes}
        if self.capabilities is not None:
            missing |= set(wanted) - self.capabilities
        if missing:
            raise BeyondAuthority(missing)

    def check_client(self, row: ClientRow) -> None:
        self.check(row.scopes, capabilities_of(row))


OPERATOR = Authority()
NOTHING = Authority(frozenset(), frozenset())


def approve(session: Session, row: ClientRow, actor: str, authority: Authority = OPERATOR) -> ClientRow:
    if row.status != ClientStatus.PENDING:
        raise InvalidChange(f"client {row.id!r} is {row.status}, not awaiting approval")
    authority.check_client(row)  # approving is granting what the client registered with
    return _set_status(session, row, ClientStatus.ACTIVE, actor)


def disable(session: Session, row: ClientRow, actor: str) -> ClientRow:
    if row.status == ClientStatus.DISABLED:
        raise InvalidChange(f"client {row.id!r} is disabled already")
    changed = _set_status(session, row, ClientStatus.DISABLED, actor)
    # MCP servers following the revocation feed drop its tokens too
    session.add(Revocation(kind=RevocationKind.CLIENT, subject=row.id, reason="client disabled", actor=actor))
    return changed


def set_trusted(session: Session, row: ClientRow, trusted: bool, actor: str,
                authority: Authority = OPERATOR) -> ClientRow:
    """A trusted client skips the consent page (first-party clients)."""
    if trusted:
        authority.check((), {TRUSTED})
    audit.record(session, "client.trust_changed", actor=actor, client_id=row.id,
                 data={"before": {"trusted": row.trusted}, "after": {"trusted": trusted}})
    return _save(session, row, trusted=trusted)


def _set_status(session: Session, row: ClientRow, status: str, actor: str) -> ClientRow:
    audit.record(session, "client.approved" if status == ClientStatus.ACTIVE else "client.disabled", actor=actor,
                 client_id=row.id, data={"before": {"status": row.status}, "after": {"status": status}})
    return _save(session, row, status=status)


def _save(session: Session, row: ClientRow, **changes: Any) -> ClientRow:
    if all(getattr(row, name) == value for name, value in changes.items()):
        return row  # as the unit of work did: an unchanged client keeps its updated_at
    now = utcnow()
    repo.update(session, row.id, changes, now)
    return row._replace(**changes, updated_at=now)


def check_resource_servers(session: Session, server_ids: Iterable[str]) -> list[str]:
    """The MCP server ids, sorted, each a registered server's; ``InvalidChange`` naming any that is not."""
    wanted = sorted(set(server_ids))
    unknown = [server_id for server_id in wanted if mcp_servers.get(session, server_id) is None]
    if unknown:
        raise InvalidChange(f"no MCP server {', '.join(map(repr, unknown))}")
    return wanted


def set_resource_servers(session: Session, row: ClientRow, server_ids: Iterable[str], actor: str) -> ClientRow:
    """The MCP servers whose tokens an introspecting client may introspect (RFC 7662 §4); empty: none."""
    if not row.may_introspect:
        raise InvalidChange(f"client {row.id!r} may not introspect; resource servers are for one that may")
    wanted = check_resource_servers(session, server_ids)
    audit.record(session, "client.resource_servers_changed", actor=actor, client_id=row.id,
                 data={"before": {"resource_servers": list(row.resource_servers or ())},
                       "after": {"resource_servers": wanted}})
    return _save(session, row, resource_servers=wanted)


def set_dpop_bound(session: Session, row: ClientRow, bound: bool, actor: str) -> ClientRow:
    """RFC 9449 §5.2 ``dpop_bound_access_tokens``: the token endpoint issues the client DPoP-bound tokens only.
    A metadata-document client's comes from its document, which would overwrite a change made here."""
    if row.kind == ClientKind.CIMD:
        raise InvalidChange(f"client {row.id!r} is described by its metadata document, which sets "
                            "dpop_bound_access_tokens; require DPoP for its MCP servers instead")
    audit.record(session, "client.dpop_changed", actor=actor, client_id=row.id,
                 data={"before": {"dpop_bound_access_tokens": row.dpop_bound_access_tokens},
                       "after": {"dpop_bound_access_tokens": bound}})
    return _save(session, row, dpop_bound_access_tokens=bound)
