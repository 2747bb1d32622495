"""Repository for what authorizations produce: codes, refresh-token families, consents,
pending authorizations, revocations and single-use JWT ids.

Every state change that must happen once (a code redeemed, a refresh token rotated) is one
conditional UPDATE whose row count says whether this request won.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, NamedTuple, cast

from sqlalchemy import Update, bindparam, case, insert, select, update
from sqlalchemy.orm import Session

from broker.storage.hot import Tx
from broker.storage.models import (
    AuthorizationCode,
    Client,
    Consent,
    PendingAuthorization,
    RefreshTokenFamily,
    Revocation,
    RotatedRefreshToken,
    SeenJti,
    User,
)
from broker.storage.prepared import Prepared
from broker.storage.statements import dialect_insert, rowcount

# Access tokens of a revoked family die within their lifetime; the feed keeps the entry a day.
FAMILY_TOKEN_HORIZON = dt.timedelta(days=1)


class CodeRow(NamedTuple):
    """An authorization code's columns."""

    code_hash: str
    client_id: str
    user_id: str
    redirect_uri: str
    resource: str
    scope: str
    code_challenge: str
    code_challenge_method: str
    nonce: str | None
    auth_time: dt.datetime | None
    acr: str | None
    oidc_scope: str | None
    family_id: str | None
    dpop_jkt: str | None  # the DPoP key the code must be redeemed with (RFC 9449 §10)
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None


class FamilyRow(NamedTuple):
    """A refresh-token family's columns."""

    id: str
    client_id: str
    user_id: str
    resource: str
    scope: str
    current_hash: str
    generation: int
    auth_time: dt.datetime | None
    acr: str | None
    oidc_scope: str | None
    dpop_jkt: str | None  # the DPoP key a public client's refresh tokens are bound to (RFC 9449 §5)
    created_at: dt.datetime
    last_used_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    revoked_reason: str | None


class TokenStanding(NamedTuple):
    """Everything about an access token that can change after it was signed (``access_token_standing``)."""

    revoked_id: int | None
    client_status: str | None
    family: str | None
    user_status: str | None
    user_not_before: dt.datetime | None


class RevocationRow(NamedTuple):
    id: int
    kind: str
    subject: str
    not_before: dt.datetime | None
    created_at: dt.datetime

# ---------------------------------------------------------------- authorization codes


def add(session: Session, *rows: object) -> None:
    session.add_all(rows)
    session.flush()


_CODES = AuthorizationCode.__table__
# Prepared: a code is written at every sign-in and redeemed at every code exchange.
_ADD_CODE = Prepared(insert(_CODES), columns=[c.key for c in _CODES.c if c.key not in ("family_id", "used_at")])
_CLAIM_CODE = Prepared(update(_CODES)
                       .where(_CODES.c.code_hash == bindparam("b_hash"), _CODES.c.used_at.is_(None),
                              _CODES.c.expires_at > bindparam("b_now"))
                       .values(used_at=bindparam("b_now"))
                       .returning(*_CODES.c), row=CodeRow)
_CODE = Prepared(select(*_CODES.c).where(_CODES.c.code_hash == bindparam("b_hash")), row=CodeRow)
_CODE_FAMILY = Prepared(update(_CODES).where(_CODES.c.code_hash == bindparam("b_hash"))
                        .values(family_id=bindparam("b_family")))


def add_code(session: Session, **columns: Any) -> None:
    """Store a new code: every column but ``family_id`` and ``used_at`` (unset until it is redeemed)."""
    _ADD_CODE.rowcount(session, {"dpop_jkt": None, **columns})


async def claim_code_hot(tx: Tx, code_hash: str, now: dt.datetime) -> CodeRow | None:
    claimed: CodeRow | None = await tx.first(_CLAIM_CODE, {"b_hash": code_hash, "b_now": now})
    return claimed


async def set_code_family_hot(tx: Tx, code_hash: str, family_id: str) -> None:
    await tx.rowcount(_CODE_FAMILY, {"b_hash": code_hash, "b_family": family_id})


async def code_hot(tx: Tx, code_hash: str) -> CodeRow | None:
    """A code as stored, used or not (nothing changes)."""
    found: CodeRow | None = await tx.first(_CODE, {"b_hash": code_hash})
    return found


# ---------------------------------------------------------------- refresh-token families


_FAMILIES = RefreshTokenFamily.__table__
# Built and compiled once (Prepared): a refresh is the hottest path there is.
_ROTATE = Prepared(update(_FAMILIES)
                   .where(_FAMILIES.c.current_hash == bindparam("b_old"),
                          _FAMILIES.c.client_id == bindparam("b_client"), _FAMILIES.c.revoked_at.is_(None),
                          _FAMILIES.c.expires_at > bindparam("b_now"), _FAMILIES.c.last_used_at > bindparam("b_idle"))
                   .values(current_hash=bindparam("b_new"), generation=_FAMILIES.c.generation + 1,
                           last_used_at=bindparam("b_now"))
                   .returning(*_FAMILIES.c), row=FamilyRow)
_ROTATED = Prepared(insert(RotatedRefreshToken.__table__), columns=["token_hash", "family_id", "rotated_at"])
# PostgreSQL: the rotation and the rotated token's record in one statement (one round trip, not two).
_ROTATION = cast(Update, _ROTATE.statement).cte("rotation")
_ROTATE_AND_RECORD = Prepared(select(*_ROTATION.c).add_cte(
    insert(RotatedRefreshToken.__table__)
    .from_select(["token_hash", "family_id", "rotated_at"],
                 select(bindparam("b_old", type_=_FAMILIES.c.current_hash.type), _ROTATION.c.id,
                        bindparam("b_now", type_=_FAMILIES.c.last_used_at.type)))
    .cte("recorded")), row=FamilyRow)
# A rotation of a family already read: the same conditions and its id, nothing returned but that it happened.
_ROTATE_KNOWN = Prepared(update(_FAMILIES)
                         .where(_FAMILIES.c.id == bindparam("b_id"), _FAMILIES.c.current_hash == bindparam("b_old"),
                                _FAMILIES.c.client_id == bindparam("b_client"), _FAMILIES.c.revoked_at.is_(None),
                                _FAMILIES.c.expires_at > bindparam("b_now"),
                                _FAMILIES.c.last_used_at > bindparam("b_idle"))
                         .values(current_hash=bindparam("b_new"), generation=_FAMILIES.c.generation + 1,
                                 last_used_at=bindparam("b_now")))
_KNOWN_ROTATION = cast(Update, _ROTATE_KNOWN.statement).returning(_FAMILIES.c.id).cte("rotation")
_ROTATE_KNOWN_AND_RECORD = Prepared(select(_KNOWN_ROTATION.c.id).add_cte(
    insert(RotatedRefreshToken.__table__)
    .from_select(["token_hash", "family_id", "rotated_at"],
                 select(bindparam("b_old", type_=_FAMILIES.c.current_hash.type), _KNOWN_ROTATION.c.id,
                        bindparam("b_now", type_=_FAMILIES.c.last_used_at.type)))
    .cte("recorded")))
_START_FAMILY = Prepared(insert(_FAMILIES).returning(*_FAMILIES.c),
                         columns=[c.key for c in _FAMILIES.c if c.key not in ("revoked_at", "revoked_reason")],
                         row=FamilyRow)
_BY_CURRENT = Prepared(select(*_FAMILIES.c).where(_FAMILIES.c.current_hash == bindparam("b_hash")), row=FamilyRow)
_ROTATED_TABLE = RotatedRefreshToken.__table__
_BY_ROTATED = Prepared(select(*_FAMILIES.c).join(_ROTATED_TABLE, _ROTATED_TABLE.c.family_id == _FAMILIES.c.id)
                       .where(_ROTATED_TABLE.c.token_hash == bindparam("b_hash")), row=FamilyRow)
_NARROW = Prepared(update(_FAMILIES).where(_FAMILIES.c.id == bindparam("b_id")).values(scope=bindparam("b_scope")))
_BIND = Prepared(update(_FAMILIES).where(_FAMILIES.c.id == bindparam("b_id"), _FAMILIES.c.dpop_jkt.is_(None))
                 .values(dpop_jkt=bindparam("b_jkt")))
_REVOKE_FAMILY = Prepared(update(_FAMILIES).where(_FAMILIES.c.id == bindparam("b_id"), _FAMILIES.c.revoked_at.is_(None))
                          .values(revoked_at=bindparam("b_now"), revoked_reason=bindparam("b_reason")))
_REVOCATIONS = Revocation.__table__
_ADD_REVOCATION = Prepared(insert(_REVOCATIONS), columns=["kind", "subject", "not_before", "reason", "actor",
                                                          "created_at", "expires_at"])
_SINCE = Prepared(select(_REVOCATIONS.c.id, _REVOCATIONS.c.kind, _REVOCATIONS.c.subject, _REVOCATIONS.c.not_before,
                         _REVOCATIONS.c.created_at)
                  .where(_REVOCATIONS.c.id > bindparam("b_cursor"))
                  .where(_REVOCATIONS.c.expires_at.is_(None) | (_REVOCATIONS.c.expires_at > bindparam("b_now")))
                  .order_by(_REVOCATIONS.c.id).limit(bindparam("b_limit")), row=RevocationRow)


async def start_family_hot(tx: Tx, **columns: Any) -> FamilyRow:
    family: FamilyRow | None = await tx.first(_START_FAMILY, {"dpop_jkt": None, **columns})
    assert family is not None
    return family


async def rotate_current_hot(tx: Tx, old_hash: str, new_hash: str, client_id: str, now: dt.datetime,
                             idle_cutoff: dt.datetime) -> FamilyRow | None:
    """``rotate_current`` on the hot lane."""
    params = {"b_old": old_hash, "b_new": new_hash, "b_client": client_id, "b_now": now, "b_idle": idle_cutoff}
    family: FamilyRow | None
    if tx.dialect == "postgresql":
        family = await tx.first(_ROTATE_AND_RECORD, params)
        return family
    family = await tx.first(_ROTATE, params)  # SQLite has no UPDATE inside WITH
    if family is not None:
        await tx.rowcount(_ROTATED, {"token_hash": old_hash, "family_id": family.id, "rotated_at": now})
    return family


async def rotate_known_hot(tx: Tx, family: FamilyRow, old_hash: str, new_hash: str, now: dt.datetime,
                           idle_cutoff: dt.datetime) -> bool:
    """Rotate a family read in this transaction, under the conditions of ``rotate_current``; False when another
    request changed it in between."""
    params = {"b_id": family.id, "b_old": old_hash, "b_new": new_hash, "b_client": family.client_id, "b_now": now,
              "b_idle": idle_cutoff}
    if tx.dialect == "postgresql":
        return await tx.first(_ROTATE_KNOWN_AND_RECORD, params) is not None
    if await tx.rowcount(_ROTATE_KNOWN, params) != 1:
        return False
    await tx.rowcount(_ROTATED, {"token_hash": old_hash, "family_id": family.id, "rotated_at": now})
    return True


def family_by_current(session: Session, token_hash: str) -> FamilyRow | None:
    family: FamilyRow | None = _BY_CURRENT.first(session, {"b_hash": token_hash})
    return family


async def family_by_current_hot(tx: Tx, token_hash: str) -> FamilyRow | None:
    family: FamilyRow | None = await tx.first(_BY_CURRENT, {"b_hash": token_hash})
    return family


async def family_by_rotated_hot(tx: Tx, token_hash: str) -> FamilyRow | None:
    family: FamilyRow | None = await tx.first(_BY_ROTATED, {"b_hash": token_hash})
    return family


async def narrow_family_hot(tx: Tx, family_id: str, scope: str) -> None:
    await tx.rowcount(_NARROW, {"b_id": family_id, "b_scope": scope})


async def bind_family_hot(tx: Tx, family_id: str, jkt: str) -> None:
    """Bind an unbound family's refresh tokens to a DPoP key (a bound one keeps its key)."""
    await tx.rowcount(_BIND, {"b_id": family_id, "b_jkt": jkt})


async def revoke_family_hot(tx: Tx, family_id: str, reason: str, now: dt.datetime) -> bool:
    """``revoke_family`` on the hot lane."""
    if await tx.rowcount(_REVOKE_FAMILY, {"b_id": family_id, "b_now": now, "b_reason": reason[:200]}) != 1:
        return False
    await tx.rowcount(_ADD_REVOCATION, {"kind": "family", "subject": family_id, "not_before": None,
                                        "reason": reason[:200], "actor": "", "created_at": now,
                                        "expires_at": now + FAMILY_TOKEN_HORIZON})
    return True


async def revoke_token_id_hot(tx: Tx, jti: str, expires_at: dt.datetime, reason: str, actor: str,
                              now: dt.datetime) -> bool:
    """``revoke_token_id`` on the hot lane: False, and nothing written, when the id is revoked already."""
    if await tx.scalar(_TOKEN_ID_REVOKED, {"jti": jti}) is not None:
        return False
    await tx.rowcount(_ADD_REVOCATION, {"kind": "token", "subject": jti, "not_before": None, "reason": reason,
                                        "actor": actor, "created_at": now, "expires_at": expires_at})
    return True


async def revocations_since_hot(tx: Tx, cursor: int, now: dt.datetime, limit: int) -> list[RevocationRow]:
    return await tx.rows(_SINCE, {"b_cursor": cursor, "b_now": now, "b_limit": limit})


def revoke_family(session: Session, family_id: str, reason: str, now: dt.datetime) -> bool:
    """Revoke a family once; its access tokens (``sid``) go into the revocation feed."""
    if rowcount(session, update(RefreshTokenFamily)
                .where(RefreshTokenFamily.id == family_id, RefreshTokenFamily.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason=reason[:200])
                .execution_options(synchronize_session=False)) != 1:
        return False
    session.add(Revocation(kind="family", subject=family_id, reason=reason[:200], created_at=now,
                           expires_at=now + FAMILY_TOKEN_HORIZON))
    session.flush()
    return True


# ---------------------------------------------------------------- revocations


def revoke_token_id(session: Session, jti: str, expires_at: dt.datetime, reason: str, actor: str) -> bool:
    """Revoke an access token's id once: False, and nothing written, if it is revoked already (so revoking the
    same token again and again adds nothing to the revocation feed that every MCP server downloads)."""
    if is_token_id_revoked(session, jti):
        return False
    session.add(Revocation(kind="token", subject=jti, expires_at=expires_at, reason=reason, actor=actor))
    session.flush()
    return True


_REVOKED_TOKEN_ID = (select(Revocation.__table__.c.id)
                     .where(Revocation.__table__.c.kind == "token", Revocation.__table__.c.subject == bindparam("jti"))
                     .limit(1))
_TOKEN_ID_REVOKED = Prepared(_REVOKED_TOKEN_ID)


def is_token_id_revoked(session: Session, jti: str) -> bool:
    return _TOKEN_ID_REVOKED.scalar(session, {"jti": jti}) is not None


_CLIENTS, _USERS = Client.__table__, User.__table__
_ACCESS_TOKEN_STANDING = Prepared(select(
    _REVOKED_TOKEN_ID.scalar_subquery().label("revoked_id"),
    select(_CLIENTS.c.status).where(_CLIENTS.c.id == bindparam("client_id")).scalar_subquery().label("client_status"),
    select(case((_FAMILIES.c.revoked_at.is_(None), "live"), else_="revoked"))
    .where(_FAMILIES.c.id == bindparam("family_id")).scalar_subquery().label("family"),
    select(_USERS.c.status).where(_USERS.c.id == bindparam("user_id")).scalar_subquery().label("user_status"),
    select(_USERS.c.not_before).where(_USERS.c.id == bindparam("user_id")).scalar_subquery().label("user_not_before"),
), row=TokenStanding)


def access_token_standing(session: Session, *, jti: str, client_id: str, family_id: str | None,
                          user_id: str | None) -> TokenStanding:
    """Everything about an access token that can change after it was signed, in one statement (one round
    trip): ``revoked_id`` (a revocation of its ``jti``, or None), ``client_status``, ``family`` ("live",
    "revoked", or None when there is no such family), ``user_status`` and ``user_not_before`` (None when
    there is no such user). A None id asks nothing."""
    standing: TokenStanding | None = _ACCESS_TOKEN_STANDING.first(
        session, {"jti": jti, "client_id": client_id, "family_id": family_id, "user_id": user_id})
    assert standing is not None  # a select of scalar subqueries is always one row
    return standing


async def access_token_standing_hot(tx: Tx, *, jti: str, client_id: str, family_id: str | None,
                                    user_id: str | None) -> TokenStanding:
    standing: TokenStanding | None = await tx.first(
        _ACCESS_TOKEN_STANDING, {"jti": jti, "client_id": client_id, "family_id": family_id, "user_id": user_id})
    assert standing is not None  # a select of scalar subqueries is always one row
    return standing


# ---------------------------------------------------------------- single-use JWT ids


@functools.cache
def _first_use(dialect: str) -> Prepared:
    return Prepared(dialect_insert(dialect, SeenJti.__table__).on_conflict_do_nothing(index_elements=["key_hash"])
                    .returning(SeenJti.__table__.c.key_hash), columns=["key_hash", "purpose", "expires_at"])


def first_use_of_jti(session: Session, key_hash: str, purpose: str, expires_at: dt.datetime) -> bool:
    """Record a JWT id; False if it was recorded before (by any instance)."""
    statement = _first_use(session.get_bind().dialect.name)
    values = {"key_hash": key_hash, "purpose": purpose, "expires_at": expires_at}
    return statement.scalar(session, values) is not None


async def first_use_of_jti_hot(tx: Tx, key_hash: str, purpose: str, expires_at: dt.datetime) -> bool:
    values = {"key_hash": key_hash, "purpose": purpose, "expires_at": expires_at}
    return await tx.scalar(_first_use(tx.dialect), values) is not None


# ---------------------------------------------------------------- pending authorizations and consent


_PENDING = PendingAuthorization.__table__


class Pending(NamedTuple):
    """A sign-in under way (``PendingAuthorization``'s columns): read at each step, changed by ``update_pending``
    and ``advance_pending`` (prepared statements: a sign-in reads and writes it at each step)."""

    id: str
    browser_hash: str
    status: str  # SignInStatus
    client_id: str
    redirect_uri: str
    resource: str
    server_id: str
    requested_scope: str
    granted_scope: str | None
    state: str | None
    code_challenge: str
    code_challenge_method: str
    nonce: str | None
    idp_id: str
    upstream_state_hash: str
    upstream_nonce: str
    upstream_verifier_encrypted: bytes
    user_id: str | None
    auth_time: dt.datetime | None
    acr: str | None
    oidc_scope: str | None
    prompt: str | None
    dpop_jkt: str | None  # the key the code will be bound to (RFC 9449 §10)
    created_at: dt.datetime
    expires_at: dt.datetime

_HOLD = Prepared(insert(_PENDING), columns=[c.key for c in _PENDING.c if c.key not in ("user_id", "granted_scope",
                                                                                        "auth_time", "acr")])
_PENDING_BY_ID = Prepared(select(*_PENDING.c).where(_PENDING.c.id == bindparam("b_id")), row=Pending)
_PENDING_BY_STATE = Prepared(select(*_PENDING.c).where(_PENDING.c.upstream_state_hash == bindparam("b_state")),
                             row=Pending)
_ADVANCE = Prepared(update(_PENDING).where(_PENDING.c.id == bindparam("b_id"), _PENDING.c.status == bindparam("b_from"))
                    .values(status=bindparam("b_to", type_=_PENDING.c.status.type)))


def hold_pending(session: Session, **columns: Any) -> None:
    """Store a new pending authorization: every column but what the sign-in fills in later."""
    _HOLD.rowcount(session, {"dpop_jkt": None, **columns})


def pending(session: Session, pending_id: str) -> Pending | None:
    found: Pending | None = _PENDING_BY_ID.first(session, {"b_id": pending_id})
    return found


def pending_by_upstream_state(session: Session, state_hash: str) -> Pending | None:
    found: Pending | None = _PENDING_BY_STATE.first(session, {"b_state": state_hash})
    return found


def advance_pending(session: Session, pending_id: str, from_status: str, to_status: str) -> bool:
    """Move a pending authorization on, once: True only for the request that did."""
    return _ADVANCE.rowcount(session, {"b_id": pending_id, "b_from": from_status, "b_to": to_status}) == 1


def update_pending(session: Session, pending_id: str, **values: Any) -> None:
    """Set columns of a pending authorization (one prepared statement per set of column names)."""
    params = {f"v_{name}": value for name, value in values.items()}
    _pending_update(tuple(sorted(values))).rowcount(session, {"b_id": pending_id, **params})


@functools.cache
def _pending_update(columns: tuple[str, ...]) -> Prepared:
    return Prepared(update(_PENDING).where(_PENDING.c.id == bindparam("b_id"))
                    .values({name: bindparam(f"v_{name}", type_=_PENDING.c[name].type) for name in columns}))


def consent(session: Session, user_id: str, client_id: str, server_id: str) -> Consent | None:
    return session.get(Consent, (user_id, client_id, server_id))
