"""Refresh-token families and authorization codes on the hot lane: one conditional statement decides who won.

A family is the chain of refresh tokens one authorization produced. Presenting an already-rotated token
revokes the whole family (RFC 9700 §4.14.2); so does replaying a code (RFC 6749 §4.1.2) for what it produced.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from broker import audit
from broker.oauth import secrets
from broker.oauth.engine.context import Grant
from broker.oauth.errors import InvalidGrantError
from broker.oauth.tokens import RefreshGrant, scope_string
from broker.storage import grants
from broker.storage.grants import CodeRow, FamilyRow
from broker.storage.models import new_id


async def start(grant: Grant, *, client_id: str, user_id: str, resource: str, scopes: Iterable[str],
                auth_time: dt.datetime | None, acr: str | None, oidc_scope: str | None,
                dpop_jkt: str | None = None) -> RefreshGrant:
    """A new family; ``oidc_scope`` (the code's) makes every refresh carry an ID token too; ``dpop_jkt`` binds its
    refresh tokens to that DPoP key."""
    token, now = secrets.new_token(), grant.now
    family = await grants.start_family_hot(
        grant.tx, id=new_id(), client_id=client_id, user_id=user_id, resource=resource, scope=scope_string(scopes),
        current_hash=secrets.digest(token), generation=0, auth_time=auth_time, acr=acr, oidc_scope=oidc_scope,
        dpop_jkt=dpop_jkt, created_at=now, last_used_at=now, expires_at=now + grant.engine.refresh_tokens.absolute)
    return RefreshGrant(family, token)


async def rotate(grant: Grant, presented: str, client_id: str, read: FamilyRow | None = None) -> RefreshGrant:
    """The next refresh token of ``presented``'s family (``read``: that family, read in this transaction), or
    ``InvalidGrantError``: one conditional UPDATE in the usual case; only when it matches nothing does the broker
    look closer (reuse, expiry, another client)."""
    token, now = secrets.new_token(), grant.now
    old_hash, new_hash = secrets.digest(presented), secrets.digest(token)
    idle_cutoff = now - grant.engine.refresh_tokens.idle
    if read is not None:
        if await grants.rotate_known_hot(grant.tx, read, old_hash, new_hash, now, idle_cutoff):
            return RefreshGrant(read._replace(current_hash=new_hash, generation=read.generation + 1,
                                              last_used_at=now), token)
    else:
        family = await grants.rotate_current_hot(grant.tx, old_hash, new_hash, client_id, now, idle_cutoff)
        if family is not None:
            return RefreshGrant(family, token)
    family = await current(grant, presented, client_id)  # raises, unless it changed under us
    # Another request rotated it in between: two holders of one token (RFC 9700 §4.14.2).
    await grants.revoke_family_hot(grant.tx, family.id, "refresh token used twice", now)
    await _audit_reuse(grant, family, "concurrent use")
    raise InvalidGrantError("refresh token was already used")


async def current(grant: Grant, presented: str, client_id: str) -> FamilyRow:
    """The live family whose current token is ``presented``, not rotated (a subject token); a rotated token is
    reuse, as at the token endpoint: its family is revoked."""
    presented_hash = secrets.digest(presented)
    family = await grants.family_by_current_hot(grant.tx, presented_hash)
    if family is None:
        reused = await grants.family_by_rotated_hot(grant.tx, presented_hash)
        if reused is None:
            raise InvalidGrantError("unknown refresh token")
        await grants.revoke_family_hot(grant.tx, reused.id, "rotated refresh token reused", grant.now)
        await _audit_reuse(grant, reused, "a rotated token was presented")
        raise InvalidGrantError("refresh token was already used")
    grant.engine.refresh_tokens.check_usable(family, client_id, grant.now)
    return family


async def _audit_reuse(grant: Grant, family: FamilyRow, how: str) -> None:
    await audit.record_hot(grant.tx, "refresh_token.reuse_detected", actor=family.client_id, user_id=family.user_id,
                           client_id=family.client_id, outcome="revoked", data={"family_id": family.id, "how": how})


async def redeem(grant: Grant, code: str) -> CodeRow:
    """Consume ``code`` and return its columns; on any failure ``InvalidGrantError`` (RFC 6749 §5.2). A code
    presented again revokes what it produced."""
    code_hash = secrets.digest(code)
    claimed = await grants.claim_code_hot(grant.tx, code_hash, grant.now)
    if claimed is not None:
        return claimed
    row = await grants.code_hot(grant.tx, code_hash)
    if row is None:
        raise InvalidGrantError("unknown authorization code")
    if row.used_at is not None:
        if row.family_id is not None:  # RFC 6749 §4.1.2: revoke what the code produced
            await grants.revoke_family_hot(grant.tx, row.family_id, "authorization code replayed", grant.now)
        await audit.record_hot(grant.tx, "authorization_code.replayed", actor=row.client_id, user_id=row.user_id,
                               client_id=row.client_id, outcome="revoked", data={"family_id": row.family_id})
        raise InvalidGrantError("authorization code already used")
    raise InvalidGrantError("authorization code expired")

