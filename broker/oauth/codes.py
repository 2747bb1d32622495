"""Authorization codes: 256-bit random, stored as digests, redeemed once (RFC 6749 §4.1.2; the token engine
redeems them, ``oauth.engine.families.redeem``)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from broker.oauth import secrets
from broker.storage import grants


def issue(session: Session, *, client_id: str, user_id: str, redirect_uri: str, resource: str, scope: str,
          code_challenge: str, nonce: str | None, auth_time: dt.datetime | None, acr: str | None,
          now: dt.datetime, lifetime: int, oidc_scope: str | None = None, dpop_jkt: str | None = None) -> str:
    code = secrets.new_token()
    grants.add_code(session, code_hash=secrets.digest(code), client_id=client_id, user_id=user_id,
                    redirect_uri=redirect_uri, resource=resource, scope=scope, code_challenge=code_challenge,
                    code_challenge_method="S256", nonce=nonce, auth_time=auth_time, acr=acr, oidc_scope=oidc_scope,
                    dpop_jkt=dpop_jkt, created_at=now, expires_at=now + dt.timedelta(seconds=lifetime))
    return code
