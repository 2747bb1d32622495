"""Housekeeping deletes only rows whose window has passed, on both stores."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from broker.storage import housekeeping
from broker.storage.db import Database
from broker.storage.models import (
    AuthorizationCode,
    PendingAuthorization,
    RefreshTokenFamily,
    RotatedRefreshToken,
    SeenJti,
    User,
)

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
OLD, FRESH = NOW - dt.timedelta(days=3), NOW + dt.timedelta(minutes=5)


def pending(id_: str, expires: dt.datetime) -> PendingAuthorization:
    return PendingAuthorization(id=id_, browser_hash="b", client_id="c", redirect_uri="r", resource="x", server_id="s",
                                code_challenge="c" * 43, code_challenge_method="S256", idp_id="test",
                                upstream_state_hash=id_ * 8, upstream_nonce="n", upstream_verifier_encrypted=b"",
                                created_at=OLD, expires_at=expires)


def code(hash_: str, expires: dt.datetime) -> AuthorizationCode:
    return AuthorizationCode(code_hash=hash_, client_id="c", user_id="u", redirect_uri="r", resource="x",
                             code_challenge="c" * 43, code_challenge_method="S256", expires_at=expires)


def family(id_: str, expires: dt.datetime) -> RefreshTokenFamily:
    return RefreshTokenFamily(id=id_, client_id="c", user_id="u", resource="x", current_hash=id_ * 8,
                              expires_at=expires, created_at=OLD, last_used_at=OLD)


def count(db: Database, model) -> int:
    with db.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_purge_keeps_what_still_matters(migrated: Database) -> None:
    with migrated.transaction() as session:
        session.add(User(id="u", email="u@example.com"))
        session.flush()
        session.add_all([pending("p-old", OLD), pending("p-new", FRESH), code("c-old", OLD), code("c-new", FRESH),
                         SeenJti(key_hash="j-old", purpose="t", expires_at=OLD),
                         SeenJti(key_hash="j-new", purpose="t", expires_at=FRESH),
                         family("f-old", OLD), family("f-new", FRESH)])
        session.flush()
        session.add_all([RotatedRefreshToken(token_hash="r-old", family_id="f-old"),
                         RotatedRefreshToken(token_hash="r-new", family_id="f-new")])
    with migrated.transaction() as session:
        purged = housekeeping.purge_expired(session, NOW)
    assert purged == {"pending_authorizations": 1, "authorization_codes": 1, "seen_jtis": 1,
                      "rotated_refresh_tokens": 1, "admin_sessions": 0}
    assert [count(migrated, m) for m in (PendingAuthorization, AuthorizationCode, SeenJti, RotatedRefreshToken,
                                         RefreshTokenFamily)] == [1, 1, 1, 1, 2]  # families are kept: evidence
