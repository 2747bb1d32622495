"""Just-in-time users: a verified upstream login becomes (or updates) a broker user.

Users are keyed by (IdP, subject), never by email, so two IdPs cannot merge accounts.
Group memberships from an IdP are replaced at every login, so leaving a group upstream
shows at the next login (and, through policy, at the next refresh).

A user's email (``User.email``, and an identity's) is only ever one its IdP vouched for at the latest
sign-in or assertion (the connector's ``email_verified``: OIDC's claim, Entra's ``xms_edov``). So an
address anyone could type into an IdP never matches a policy rule, links accounts, names a user to
offboard, or goes into an access token, an ID token, UserInfo or an ID-JAG; the unverified address
is kept with the sign-in's claims as ``unverified_email``, for people to read.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.federation.identity import Identity
from broker.keys.crypto import Encryptor, upstream_refresh_token_aad
from broker.storage import users
from broker.storage.models import UpstreamIdentity, User

MAX_CLAIMS_BYTES = 16_384


def upsert_user(session: Session, identity: Identity, encryptor: Encryptor, now: dt.datetime,
                linked_idps: frozenset[str] = frozenset()) -> users.Account:
    """The broker user for this upstream login, created on first sight, as ``users.account`` reads it.

    ``linked_idps`` (``federation.link_by_verified_email``): when this IdP and another in the set both
    vouch for the same email as verified, the login joins that user instead of creating one.
    """
    known = users.login_ids(session, identity.idp_id, identity.subject)
    if known is not None:
        identity_id, user_id = known.id, known.user_id
    else:
        try:
            with session.begin_nested():  # two first sign-ins of one person at once: one records the identity
                user, record = _first_sign_in(session, identity, linked_idps, now)
                identity_id, user_id = record.id, user.id
            session.expire(user)  # what follows updates them without the ORM: no stale copy stays behind
            session.expire(record)
        except IntegrityError:
            known = users.login_ids(session, identity.idp_id, identity.subject)  # the other one's, committed
            if known is None:
                raise
            identity_id, user_id = known.id, known.user_id
    users.record_login(session, identity_id, user_id, email=vouched_email(identity), name=identity.name,
                       claims=_storable(identity.claims, identity.email_verified), now=now)
    if identity.upstream_refresh_token:
        users.keep_refresh_token(session, identity_id, encryptor.encrypt(identity.upstream_refresh_token.encode(),
                                                                          upstream_refresh_token_aad(identity_id)))
    users.set_groups(session, user_id, f"idp:{identity.idp_id}", identity.groups)
    account = users.account(session, user_id)
    assert account is not None
    return account


def _first_sign_in(session: Session, identity: Identity, linked_idps: frozenset[str],
                   now: dt.datetime) -> tuple[User, UpstreamIdentity]:
    user = _linked_user(session, identity, linked_idps)
    if user is None:
        email = vouched_email(identity)
        user = User(email=email, display_name=identity.name or email or identity.subject, status="active",
                    created_at=now, updated_at=now)
        users.add(session, user)
    record = UpstreamIdentity(user_id=user.id, idp_id=identity.idp_id, subject=identity.subject, created_at=now)
    users.add(session, record)
    return user, record


def vouched_email(identity: Identity) -> str | None:
    """The identity's email if its IdP vouched for it, else None."""
    return identity.email if identity.email and identity.email_verified is True else None


def _linked_user(session: Session, identity: Identity, linked_idps: frozenset[str]) -> User | None:
    if identity.idp_id not in linked_idps or not identity.email or identity.email_verified is not True:
        return None  # never merge on an unverified email, nor for an IdP not listed
    for candidate in users.identities_by_email(session, identity.email):
        verified = candidate.claims.get("email_verified") is True
        if candidate.idp_id in linked_idps and candidate.idp_id != identity.idp_id and verified:
            return users.get(session, candidate.user_id)
    return None


def _storable(claims: Any, email_verified: bool | None) -> dict[str, Any]:
    """The ID token's claims minus what is large or secret-adjacent (``nonce``, hashes).

    ``email_verified`` is the connector's verdict, not the raw claim (Entra's email is never
    verified, whatever the token says), because account linking relies on it.
    """
    kept = {k: v for k, v in dict(claims).items() if k not in ("nonce", "at_hash", "c_hash")}
    kept["email_verified"] = email_verified is True
    if not kept["email_verified"] and "email" in kept:  # policy claim rules must not match it either
        kept["unverified_email"] = kept.pop("email")
    return kept if len(str(kept)) <= MAX_CLAIMS_BYTES else {k: kept[k] for k in ("sub", "iss", "email") if k in kept}
