"""The upstream check at refresh: before rotating a refresh token, ask the user's IdP whether it
still accepts them, using the IdP refresh token stored (encrypted) at login.

Configured per IdP (``check_upstream_on_refresh``). A refusal upstream ends the user's sessions
here (every family revoked, earlier access tokens dead) and the refresh fails; an unreachable IdP
fails the refresh without ending anything.

The connector asks for what its IdP needs to issue a refresh token (``offline_access``, with
``prompt=consent`` where OIDC Core §11 wants it). When the check cannot run, it is said loudly: at
start-up for an IdP whose discovery document rules refresh tokens out (``report_capabilities``), at a
sign-in that brought no refresh token (the connector), and at a refresh that finds none stored.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sqlalchemy.orm import Session

from broker import audit
from broker.audit import Outcome
from broker.config import Settings
from broker.federation.base import RefreshConnector
from broker.federation.errors import UpstreamError
from broker.keys.crypto import DecryptionError, Encryptor, upstream_refresh_token_aad
from broker.lifecycle import offboarding
from broker.oauth import secrets
from broker.storage import grants, users

log = logging.getLogger("broker.lifecycle")


@dataclass(frozen=True)
class PendingCheck:
    user_id: str
    idp_id: str
    identity_id: str
    refresh_token: str = field(repr=False)


class UpstreamCheck:
    def __init__(self, settings: Settings, encryptor: Encryptor,
                 connectors: Mapping[str, RefreshConnector] = MappingProxyType({})):
        self.idps = {idp.id for idp in settings.idps if idp.check_upstream_on_refresh}
        self.encryptor = encryptor
        self.connectors = connectors  # the IdPs able to refresh (the composition root checks ``idps`` have one)

    @property
    def enabled(self) -> bool:
        return bool(self.idps)

    def find(self, session: Session, presented_refresh_token: str) -> PendingCheck | None:
        """The upstream refresh token to try for this broker refresh token, if its IdP wants checking."""
        family = grants.family_by_current(session, secrets.digest(presented_refresh_token))
        if family is None or family.revoked_at is not None:
            return None  # the grant itself will refuse it
        identity = users.identity_with_refresh_token(session, family.user_id, self.idps)
        if identity is None:
            self._say_unchecked(session, family.user_id)
            return None
        try:
            token = self.encryptor.decrypt(identity.refresh_token_encrypted or b"",
                                           upstream_refresh_token_aad(identity.id)).decode()
        except DecryptionError:
            return None
        return PendingCheck(family.user_id, identity.idp_id, identity.id, token)

    def _say_unchecked(self, session: Session, user_id: str) -> None:
        idps = users.idps_of(session, user_id, self.idps)
        if idps:
            log.warning("check_upstream_on_refresh cannot run for this refresh: no refresh token from IdP %s is "
                        "stored for the user, so the refresh is not checked upstream", ", ".join(idps),
                        extra={"user_id": user_id, "idps": idps})

    async def report_capabilities(self, connectors: Mapping[str, RefreshConnector]) -> None:
        """At start-up: say, per IdP with the check, whether it can issue the broker refresh tokens."""
        for idp_id in sorted(self.idps):
            connector = connectors.get(idp_id)
            if connector is None:
                continue
            try:
                obstacle = await connector.refresh_token_obstacle()
            except UpstreamError as exc:
                log.warning("check_upstream_on_refresh for IdP %s: its discovery document could not be read (%s); "
                            "the first sign-in will show whether it issues refresh tokens", idp_id, exc)
                continue
            if obstacle is not None:
                log.error("check_upstream_on_refresh for IdP %s cannot run: %s, so sign-ins there bring no refresh "
                          "token and refreshes are not checked upstream", idp_id, obstacle)
            else:
                consent = " with prompt=consent" if connector.asks_consent_for_refresh_token else ""
                log.info("check_upstream_on_refresh for IdP %s: sign-ins ask for offline_access%s", idp_id, consent)

    def accepted(self, session: Session, check: PendingCheck, rotated: str | None) -> None:
        if rotated:
            identity = users.identity_by_id(session, check.identity_id)
            if identity is not None:
                identity.refresh_token_encrypted = self.encryptor.encrypt(rotated.encode(),
                                                                          upstream_refresh_token_aad(identity.id))

    def refused(self, session: Session, check: PendingCheck, upstream_error: str | None, now: dt.datetime) -> None:
        user = users.get(session, check.user_id)
        identity = users.identity_by_id(session, check.identity_id)
        if identity is not None:
            identity.refresh_token_encrypted = None
        if user is not None:
            offboarding.revoke_sessions(session, user.id, reason=f"refused upstream ({upstream_error or 'error'})",
                                        actor=f"idp:{check.idp_id}", now=now, source="upstream-check")
        audit.record(session, "upstream.refresh_refused", actor=f"idp:{check.idp_id}", user_id=check.user_id,
                     outcome=Outcome.REVOKED, data={"upstream_error": upstream_error})

