"""The audit events of SCIM provisioning (actor ``scim:<idp>``; never a token, never a password).

``scim.user.created|updated|deactivated|reactivated|deleted``, ``scim.group.created|updated|deleted``
carry the SCIM id and, for updates, ``before``/``after`` of what changed. A refused change
(``scim.request.rejected``) is recorded in a transaction of its own, after the request's
transaction rolled back, with the method, path, status and ``scimType``: never the body.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from broker import audit
from broker.audit import Outcome
from broker.lifecycle.scim.wire import ScimClient, ScimRequest


def record(session: Session, request: ScimRequest, event_type: str, *, user_id: str | None = None,
           outcome: str = "success", **data: Any) -> None:
    audit.record(session, event_type, actor=request.client.actor, user_id=user_id, outcome=outcome, data=data,
                 at=request.now)


def record_rejection(session: Session, client: ScimClient, method: str, path: str, status: int,
                     scim_type: str | None) -> None:
    audit.record(session, "scim.request.rejected", actor=client.actor, outcome=Outcome.REJECTED,
                 data={"method": method, "path": path[:300], "status": status, "scim_type": scim_type})


def changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keys whose values differ, as (before, after)."""
    changed = [key for key in after if before.get(key) != after[key]]
    return {k: before.get(k) for k in changed}, {k: after[k] for k in changed}
