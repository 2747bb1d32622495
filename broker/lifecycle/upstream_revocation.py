"""Revoke offboarded users' upstream refresh tokens at their IdPs (RFC 7009), outside any transaction.

``offboarding.revoke_user`` moves the user's stored refresh tokens to a queue in its own transaction
(``storage.upstream_revocations``), so the broker's copy is gone the moment the offboarding commits,
whatever the IdP does next. ``UpstreamRevocations.run`` then, for each queued token:

1. claims it in a short transaction of its own (the row is deleted: one claimant, one attempt);
2. with no transaction open, decrypts it and asks the IdP to revoke it at its ``revocation_endpoint``
   (Okta and generic providers that advertise one; Entra ID offers none);
3. records the outcome in another short transaction: ``upstream.refresh_token_revoked`` with
   ``result`` ``revoked``, ``not_offered`` (dropped only) or ``failed`` (and why).

A slow or failing IdP therefore never holds a database connection, never blocks or undoes an
offboarding, and never keeps the token stored. ``broker serve`` runs it every few seconds; the CLI
runs it once right after ``broker users revoke``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import anyio

from broker import audit
from broker.audit import Outcome
from broker.federation.base import RevocationConnector
from broker.federation.errors import UpstreamError
from broker.keys.crypto import DecryptionError, Encryptor, upstream_refresh_token_aad
from broker.storage import upstream_revocations
from broker.storage.db import Database
from broker.storage.upstream_revocations import PendingRevocation

log = logging.getLogger("broker.lifecycle")

BATCH = 50
EVENT = "upstream.refresh_token_revoked"


class AttemptResult(StrEnum):
    REVOKED = "revoked"
    NOT_OFFERED = "not_offered"  # the IdP has no revocation endpoint (or is no longer configured): deleted only
    FAILED = "failed"  # the IdP refused or could not be reached: deleted, not revoked


AUDITED = {AttemptResult.REVOKED: Outcome.REVOKED, AttemptResult.FAILED: Outcome.FAILURE}  # else success


@dataclass(frozen=True)
class Attempt:
    """What became of one queued refresh token."""

    idp_id: str
    result: AttemptResult
    detail: str | None = None


class UpstreamRevocations:
    def __init__(self, database: Database, encryptor: Encryptor, connectors: Mapping[str, RevocationConnector]):
        self.database = database
        self.encryptor = encryptor
        self.connectors = connectors

    async def run(self) -> list[Attempt]:
        """Work off the queue once; the outcomes, in queue order."""
        attempts: list[Attempt] = []
        while batch := await anyio.to_thread.run_sync(self._claim):
            for pending in batch:
                attempt = await self._revoke(pending)
                await anyio.to_thread.run_sync(self._record, pending, attempt)
                attempts.append(attempt)
            if len(batch) < BATCH:
                break
        return attempts

    def _claim(self) -> list[PendingRevocation]:
        with self.database.transaction() as session:
            return upstream_revocations.claim(session, BATCH)

    async def _revoke(self, pending: PendingRevocation) -> Attempt:
        connector = self.connectors.get(pending.idp_id)
        if connector is None:
            return Attempt(pending.idp_id, AttemptResult.NOT_OFFERED, "the IdP is no longer configured")
        try:
            token = self.encryptor.decrypt(pending.token_encrypted, upstream_refresh_token_aad(pending.identity_id))
        except DecryptionError:
            return Attempt(pending.idp_id, AttemptResult.FAILED, "the stored token could not be decrypted")
        try:
            revoked = await connector.revoke_refresh_token(token.decode())
        except UpstreamError as exc:
            return Attempt(pending.idp_id, AttemptResult.FAILED, exc.description)
        if not revoked:
            return Attempt(pending.idp_id, AttemptResult.NOT_OFFERED, "the IdP has no revocation endpoint")
        return Attempt(pending.idp_id, AttemptResult.REVOKED)

    def _record(self, pending: PendingRevocation, attempt: Attempt) -> None:
        if attempt.result == AttemptResult.FAILED:
            log.warning("the refresh token of an offboarded user could not be revoked at IdP %s: %s (the broker's "
                        "copy is deleted)", pending.idp_id, attempt.detail, extra={"user_id": pending.user_id})
        with self.database.transaction() as session:
            audit.record(session, EVENT, actor=f"idp:{pending.idp_id}", user_id=pending.user_id,
                         outcome=AUDITED.get(attempt.result, Outcome.SUCCESS),
                         data={"idp": pending.idp_id, "result": attempt.result, "detail": attempt.detail})
