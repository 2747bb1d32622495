"""The audit log (filtered pages, chain verification) and signing keys (list, rotate), as the console."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from broker import audit
from broker.admin import audit_search, names
from broker.admin import keys as key_admin
from broker.storage import signing_keys
from broker.storage.models import AuditEvent, utcnow
from broker.storage.signing_keys import KeyRow
from broker.web.admin_api.common import BAD_BODY, Body, ColdRoute, Reader, Writer, actor, errors, fail, iso
from broker.web.deps import DbSession, State

router = APIRouter(route_class=ColdRoute)  # each route's session on its own thread


class EventOut(BaseModel):
    id: int
    occurred_at: str
    event_type: str
    actor: str | None
    user_id: str | None
    client_id: str | None
    server_id: str | None
    outcome: str | None
    data: dict[str, Any]
    chain_seq: int | None
    hash: str | None
    actor_name: str = Field(description="the actor as a person reads it (a client's name, a console user)")
    user_email: str | None = None
    user_name: str | None = None
    client_name: str | None = None
    server_name: str | None = None


class AuditPage(BaseModel):
    events: list[EventOut] = Field(description="newest first")
    next_before: int | None = Field(description="pass as `before` for the next (older) page; null: no more. A text "
                                    "search (`q`) reads 20,000 events a page, so a page may hold fewer than 50 "
                                    "events, or none, while older ones remain to be searched")
    unmatched: str | None = Field(None, description="why nothing can match (a user, client or server name that "
                                                    "matches nothing, or too much)")


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    unsealed: int = Field(description="events not yet sealed into the chain")
    head_seq: int
    head_hash: str
    broken_seq: int | None
    broken_id: int | None
    reason: str


class KeyOut(BaseModel):
    kid: str
    purpose: str
    algorithm: str
    state: str = Field(description="signing, pending, retired (published) or expired")
    created_at: str | None
    activates_at: str | None
    retired_at: str | None


class RotateIn(Body):
    now: bool = Field(False, description="sign with the new key at once (after a compromise) instead of after "
                                         "keys.activation_delay")


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


@router.get("/audit", summary="Search audit events, newest first, a page at a time (admin:read)",
            response_model=AuditPage, responses={**errors(), **BAD_BODY})
def audit_events(session: DbSession, caller: Reader, event_type: str = Query("", max_length=100),
                 user: str = Query("", max_length=320, description="user id, or part of an email or name"),
                 server: str = Query("", max_length=200, description="server id, or part of its name"),
                 client: str = Query("", max_length=2000, description="client id, or part of its name"),
                 outcome: Literal["", "allowed", "denied", "error", "revoked", "ignored"] = Query(
                     "", description="allowed: success or allowed; error: rejected or error"),
                 q: str = Query("", max_length=200, description="text in the actor, the event type or its data "
                                                                "(20,000 events a page)"),
                 denials: bool = Query(False, description="every refused request once (a denied sign-in is its "
                                                          "authorization.failed event)"),
                 since: dt.datetime | None = Query(None, description="ISO 8601; events at or after"),
                 until: dt.datetime | None = Query(None, description="ISO 8601; events before"),
                 before: int | None = Query(None, ge=1, le=2**62,
                                            description="the previous page's next_before")) -> AuditPage:
    query = audit_search.AuditQuery(user=user.strip(), client=client.strip(), server=server.strip(),
                                    event_type=event_type.strip(), outcome=outcome, text=q.strip(), denials=denials,
                                    since=_utc(since), until=_utc(until))
    search = audit_search.resolve(session, query)
    result = audit_search.page(session, search, before)
    found = names.for_events(session, result.rows)
    return AuditPage(events=[_event(row, found) for row in result.rows], next_before=result.next_before,
                     unmatched=search.unmatched)


def _event(row: AuditEvent, found: names.Names) -> EventOut:
    person = found.user(row.user_id)
    return EventOut(id=row.id, occurred_at=row.occurred_at.isoformat(), event_type=row.event_type, actor=row.actor,
                    user_id=row.user_id, client_id=row.client_id, server_id=row.server_id, outcome=row.outcome,
                    data=dict(row.data or {}), chain_seq=row.chain_seq, hash=row.hash,
                    actor_name=found.actor(row.actor).label, user_email=person.email if person else None,
                    user_name=person.display_name or None if person else None,
                    client_name=found.clients.get(row.client_id or ""),
                    server_name=found.servers.get(row.server_id or ""))


@router.get("/audit/verify", summary="Walk the audit chain and report the first event that does not fit "
                                     "(admin:read)", response_model=VerifyOut, responses=errors())
def verify(session: DbSession, state: State, caller: Reader) -> VerifyOut:
    if state.audit_keys is None:  # never in a running broker: it refuses to start without a KEK
        raise fail(409, "conflict", "keys.key_encryption_key is not configured")
    result = audit.verify(session, state.audit_keys.get(session))
    return VerifyOut(ok=result.ok, checked=result.checked, unsealed=result.unsealed, head_seq=result.head_seq,
                     head_hash=result.head_hash, broken_seq=result.broken_seq, broken_id=result.broken_id,
                     reason=result.reason)


def _key(key: KeyRow, now: dt.datetime, grace: dt.timedelta) -> KeyOut:
    return KeyOut(kid=key.kid, purpose=key.purpose, algorithm=key.algorithm, state=key_admin.state(key, now, grace),
                  created_at=iso(key.created_at), activates_at=iso(key.activates_at), retired_at=iso(key.retired_at))


@router.get("/keys", summary="Signing keys (admin:read)", response_model=list[KeyOut], responses=errors())
def list_keys(session: DbSession, state: State, caller: Reader) -> list[KeyOut]:
    now, grace = utcnow(), key_admin.grace(session, state.settings)
    return [_key(k, now, grace) for k in signing_keys.all_keys(session)]


@router.post("/keys/rotate", summary="Publish a new signing key; older keys retire when it activates "
                                     "(admin:write)", response_model=KeyOut, status_code=201,
             responses={**errors(), **BAD_BODY})
def rotate(session: DbSession, state: State, caller: Writer, body: RotateIn | None = None) -> KeyOut:
    delay = 0 if body is not None and body.now else state.settings.keys.activation_delay
    row = key_admin.rotate(session, state.keyring, delay, actor(caller))
    return _key(row, utcnow(), key_admin.grace(session, state.settings))
