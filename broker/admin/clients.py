"""Client status changes (approve, disable, trust), with before/after in the audit log.

The same steps ``broker clients approve|disable`` performs; the console calls these.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from broker import audit
from broker.storage.models import Client, Revocation


class InvalidChange(ValueError):
    pass


def approve(session: Session, row: Client, actor: str) -> None:
    if row.status != "pending":
        raise InvalidChange(f"client {row.id!r} is {row.status}, not awaiting approval")
    _set_status(session, row, "active", actor)


def disable(session: Session, row: Client, actor: str) -> None:
    if row.status == "disabled":
        raise InvalidChange(f"client {row.id!r} is disabled already")
    _set_status(session, row, "disabled", actor)
    # MCP servers following the revocation feed drop its tokens too
    session.add(Revocation(kind="client", subject=row.id, reason="client disabled", actor=actor))


def set_trusted(session: Session, row: Client, trusted: bool, actor: str) -> None:
    """A trusted client skips the consent page (first-party clients)."""
    before, row.trusted = row.trusted, trusted
    audit.record(session, "client.trust_changed", actor=actor, client_id=row.id,
                 data={"before": {"trusted": before}, "after": {"trusted": trusted}})


def _set_status(session: Session, row: Client, status: str, actor: str) -> None:
    before, row.status = row.status, status
    audit.record(session, "client.approved" if status == "active" else "client.disabled", actor=actor,
                 client_id=row.id, data={"before": {"status": before}, "after": {"status": status}})
