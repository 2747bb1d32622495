"""The upstream check at refresh: before rotating a refresh token, ask the user's IdP whether it
still accepts them, using the IdP refresh token stored (encrypted) at login.

Configured per IdP (``check_upstream_on_refresh``). A refusal upstream ends the user's sessions
here (every family revoked, earlier access tokens dead) and the refresh fails; an unreachable IdP
fails the refresh without ending anything.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker import audit
from broker.config import Settings
from broker.keys.crypto import DecryptionError, Encryptor
from broker.lifecycle import offboarding
from broker.oauth import secrets
from broker.storage import grants
from broker.storage.models import UpstreamIdentity, User


@dataclass(frozen=True)
class PendingCheck:
    user_id: str
    idp_id: str
    identity_id: str
    refresh_token: str = field(repr=False)


class UpstreamCheck:
    def __init__(self, settings: Settings, encryptor: Encryptor):
        self.idps = {idp.id for idp in settings.idps if idp.check_upstream_on_refresh}
        self.encryptor = encryptor

    @property
    def enabled(self) -> bool:
        return bool(self.idps)

    def find(self, session: Session, presented_refresh_token: str) -> PendingCheck | None:
        """The upstream refresh token to try for this broker refresh token, if its IdP wants checking."""
        family = grants.family_by_current(session, secrets.digest(presented_refresh_token))
        if family is None or family.revoked_at is not None:
            return None  # the grant itself will refuse it
        identity = session.scalar(select(UpstreamIdentity).where(
            UpstreamIdentity.user_id == family.user_id, UpstreamIdentity.idp_id.in_(self.idps),
            UpstreamIdentity.refresh_token_encrypted.is_not(None)).order_by(UpstreamIdentity.last_login_at.desc()))
        if identity is None:
            return None
        try:
            token = self.encryptor.decrypt(identity.refresh_token_encrypted or b"", _aad(identity.id)).decode()
        except DecryptionError:
            return None
        return PendingCheck(family.user_id, identity.idp_id, identity.id, token)

    def accepted(self, session: Session, check: PendingCheck, rotated: str | None) -> None:
        if rotated:
            identity = session.get(UpstreamIdentity, check.identity_id)
            if identity is not None:
                identity.refresh_token_encrypted = self.encryptor.encrypt(rotated.encode(), _aad(identity.id))

    def refused(self, session: Session, check: PendingCheck, upstream_error: str | None, now: dt.datetime) -> None:
        user = session.get(User, check.user_id)
        identity = session.get(UpstreamIdentity, check.identity_id)
        if identity is not None:
            identity.refresh_token_encrypted = None
        if user is not None:
            offboarding.revoke_sessions(session, user, reason=f"refused upstream ({upstream_error or 'error'})",
                                        actor=f"idp:{check.idp_id}", now=now, source="upstream-check")
        audit.record(session, "upstream.refresh_refused", actor=f"idp:{check.idp_id}", user_id=check.user_id,
                     outcome="revoked", data={"upstream_error": upstream_error})


def _aad(identity_id: str) -> str:
    return f"upstream-refresh-token:{identity_id}"
