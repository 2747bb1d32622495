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

import anyio

from broker import audit
from broker.federation.base import RevocationConnector
from broker.federation.errors import UpstreamError
from broker.keys.crypto import DecryptionError, Encryptor, upstream_refresh_token_aad
from broker.storage import upstream_revocations
from broker.storage.db import Database
from broker.storage.upstream_revocations import PendingRevocation

log = logging.getLogger("broker.lifecycle")

BATCH = 50
EVENT = "upstream.refresh_token_revoked"


@dataclass(frozen=True)
class Outcome:
    idp_id: str
    result: str  # revoked | not_offered | failed
    detail: str | None = None


class UpstreamRevocations:
    def __init__(self, database: Database, encryptor: Encryptor, connectors: Mapping[str, RevocationConnector]):
        self.database = database
        self.encryptor = encryptor
        self.connectors = connectors

    async def run(self) -> list[Outcome]:
        """Work off the queue once; the outcomes, in queue order."""
        outcomes: list[Outcome] = []
        while batch := await anyio.to_thread.run_sync(self._claim):
            for pending in batch:
                outcome = await self._revoke(pending)
                await anyio.to_thread.run_sync(self._record, pending, outcome)
                outcomes.append(outcome)
            if len(batch) < BATCH:
                break
        return outcomes

    def _claim(self) -> list[PendingRevocation]:
        with self.database.queued_transaction() as session:
            return upstream_revocations.claim(session, BATCH)

    async def _revoke(self, pending: PendingRevocation) -> Outcome:
        connector = self.connectors.get(pending.idp_id)
        if connector is None:
            return Outcome(pending.idp_id, "not_offered", "the IdP is no longer configured")
        try:
            token = self.encryptor.decrypt(pending.token_encrypted, upstream_refresh_token_aad(pending.identity_id))
        except DecryptionError:
            return Outcome(pending.idp_id, "failed", "the stored token could not be decrypted")
        try:
            revoked = await connector.revoke_refresh_token(token.decode())
        except UpstreamError as exc:
            return Outcome(pending.idp_id, "failed", exc.description)
        if not revoked:
            return Outcome(pending.idp_id, "not_offered", "the IdP has no revocation endpoint")
        return Outcome(pending.idp_id, "revoked")

    def _record(self, pending: PendingRevocation, outcome: Outcome) -> None:
        if outcome.result == "failed":
            log.warning("the refresh token of an offboarded user could not be revoked at IdP %s: %s (the broker's "
                        "copy is deleted)", pending.idp_id, outcome.detail, extra={"user_id": pending.user_id})
        with self.database.queued_transaction() as session:
            audit.record(session, EVENT, actor=f"idp:{pending.idp_id}", user_id=pending.user_id,
                         outcome={"revoked": "revoked", "failed": "failure"}.get(outcome.result, "success"),
                         data={"idp": pending.idp_id, "result": outcome.result, "detail": outcome.detail})
