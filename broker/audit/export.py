"""The audit log's export form: one JSON line per event, as hashed, with its place in the chain."""

from __future__ import annotations

import json

from broker.audit.chain import canonical
from broker.storage.models import AuditEvent


def json_line(event: AuditEvent) -> str:
    """The event's hashed content with its timestamp as ISO 8601, its chain position and link, and a newline."""
    record = json.loads(canonical(event))
    record.update(occurred_at=event.occurred_at.isoformat(), chain_seq=event.chain_seq, hash=event.hash)
    return json.dumps(record, separators=(",", ":")) + "\n"
