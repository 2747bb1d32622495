"""Sealing and verifying the audit chain.

Link of the event at position ``n``: ``HMAC-SHA256(key, n || prev_hash || canonical(event))``.
The key is stored encrypted under the key-encryption key (``broker.audit.keystore``), so someone who
can write to the database but does not hold that key cannot forge or recompute links, and rotating
the key-encryption key re-encrypts the MAC key without changing it. The head row carries a MAC of the last link,
so deleting events from the end is detected as well. Sealers serialise on the head row only;
writers never wait for them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from broker.storage import audit_chain
from broker.storage.audit_chain import ChainedEvent, Head, Link
from broker.storage.models import utcnow

log = logging.getLogger("broker.audit")


class EventContent(Protocol):
    """What the chain hashes of an event: every column but the chain's own (an ``AuditEvent`` or a row)."""

    @property
    def id(self) -> int: ...
    @property
    def occurred_at(self) -> dt.datetime: ...
    @property
    def event_type(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def user_id(self) -> str | None: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def server_id(self) -> str | None: ...
    @property
    def outcome(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...


class AuditKey:
    """The MAC key of the chain (32 bytes)."""

    def __init__(self, key: bytes):
        self.material = key

    @classmethod
    def derived_from(cls, kek: bytes) -> AuditKey:
        """The key releases before the stored one derived from the key-encryption key, and the one a chain
        begins with: every release sealing beside another during a rolling upgrade uses the same."""
        return cls(hashlib.sha256(b"mcp-auth-broker audit chain\0" + kek).digest())

    def sealed(self, head: Head) -> bool:
        """Whether the chain head carries this key's MAC."""
        return hmac.compare_digest(head.mac, self.head_mac(head.seq, head.hash))

    def link(self, seq: int, prev_hash: str, event: EventContent) -> str:
        message = f"{seq}\n{prev_hash}\n".encode() + canonical(event)
        return hmac.new(self.material, message, hashlib.sha256).hexdigest()

    def head_mac(self, seq: int, link: str) -> str:
        return hmac.new(self.material, f"head\n{seq}\n{link}".encode(), hashlib.sha256).hexdigest()


def canonical(event: EventContent) -> bytes:
    """The event's content as hashed: every column but the chain's own, in a fixed JSON form."""
    occurred = event.occurred_at.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    body = {"id": event.id, "occurred_at": occurred, "event_type": event.event_type, "actor": event.actor,
            "user_id": event.user_id, "client_id": event.client_id, "server_id": event.server_id,
            "outcome": event.outcome, "data": event.data}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def seal(session: Session, key: AuditKey, limit: int = 5000) -> int:
    """Chain up to ``limit`` unsealed events in id order; returns how many. Caller commits."""
    seq, link = _lock_head(session, key)
    rows = audit_chain.unsealed(session, limit)
    links = []
    for row in rows:
        seq += 1
        prev, link = link, key.link(seq, link, row)
        links.append(Link(row.id, seq, prev, link))
    if links:
        audit_chain.link(session, links, Head(seq, link, key.head_mac(seq, link)), utcnow())
        log.info("audit chain sealed", extra={"sealed": len(rows), "head_seq": seq, "head_hash": link})
    return len(rows)


def _lock_head(session: Session, key: AuditKey) -> tuple[int, str]:
    """The chain head's (seq, hash), locked for this transaction; the first seal creates the head row."""
    head = audit_chain.take_head(session)
    if head is None:
        audit_chain.add_head_if_absent(session, key.head_mac(0, ""), utcnow())
        head = audit_chain.take_head(session)
        assert head is not None
    return head


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    unsealed: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    broken_id: int | None = None
    reason: str = ""


def verify(session: Session, key: AuditKey, batch: int = 2000,
           progress: Callable[[int], None] | None = None) -> VerifyResult:
    """Walk the chain from the start; the first event that does not fit is reported.
    ``progress(1)`` is called for each event found intact."""
    expected_seq, prev = 1, ""
    for row in audit_chain.chained(session, batch):
        problem = _check(key, row, expected_seq, prev)
        if problem:
            return _broken(session, expected_seq - 1, row, problem)
        expected_seq, prev = expected_seq + 1, row.hash or ""
        if progress is not None:
            progress(1)
    return _check_head(session, key, expected_seq - 1, prev)


def sealed_count(session: Session) -> int:
    """How many events the chain holds (what ``verify`` walks)."""
    return audit_chain.sealed_count(session)


def _check(key: AuditKey, row: ChainedEvent, expected_seq: int, prev: str) -> str:
    if row.chain_seq != expected_seq:
        return f"chain position {row.chain_seq} where {expected_seq} was expected (an event was removed)"
    if row.prev_hash != prev:
        return "does not link to the event before it (events were removed, inserted or reordered)"
    if not hmac.compare_digest(row.hash or "", key.link(expected_seq, prev, row.event)):
        return "its content does not match its seal (the event was altered)"
    return ""


def _check_head(session: Session, key: AuditKey, last_seq: int, last_hash: str) -> VerifyResult:
    head = audit_chain.head(session)
    unsealed = _unsealed(session)
    head_seq, head_hash = (head.seq, head.hash) if head else (0, "")
    if head is None and last_seq == 0:
        return VerifyResult(True, 0, unsealed, 0, "")
    if head is None or not key.sealed(head):
        return VerifyResult(False, last_seq, unsealed, head_seq, head_hash, reason="the chain head was altered")
    if (head.seq, head.hash) != (last_seq, last_hash):
        return VerifyResult(False, last_seq, unsealed, head.seq, head.hash, broken_seq=last_seq + 1,
                            reason=f"the chain ends at {last_seq} but was sealed up to {head.seq} "
                                   "(events at the end were removed)")
    return VerifyResult(True, last_seq, unsealed, head.seq, head.hash)


def _broken(session: Session, checked: int, row: ChainedEvent, reason: str) -> VerifyResult:
    head = audit_chain.head(session)
    return VerifyResult(False, checked, _unsealed(session), head.seq if head else 0, head.hash if head else "",
                        broken_seq=row.chain_seq, broken_id=row.event.id, reason=reason)


def _unsealed(session: Session) -> int:
    return audit_chain.unsealed_count(session)
