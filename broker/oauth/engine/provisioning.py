"""The broker user an identity assertion (ID-JAG) names, on the hot lane (``oauth.provisioning.asserted_user``).

Users are keyed by (IdP, subject), never by email. Unlike a sign-in, an assertion carries no groups and
changes nothing about a known user. On first sight of a subject it may link to the one user with its
verified email (``link_by_email``) or create a user (``provision``); either records the identity, so the
next assertion finds it directly. An email the assertion does not vouch for (``email_verified``) is neither
linked on nor kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.oauth.engine.context import Grant
from broker.storage import users
from broker.storage.hot import Conflict


async def asserted_user(grant: Grant, *, idp_id: str, subject: str, claims: Mapping[str, Any], link_by_email: bool,
                        provision: bool) -> str | None:
    """The id of the user the assertion names; None when there is none (and none may be made)."""
    known = await users.user_id_by_identity_hot(grant.tx, idp_id, subject)
    if known is not None:
        return known
    try:
        async with grant.tx.savepoint():  # two first assertions for one subject at once: one records it
            return await _first_sight(grant, idp_id=idp_id, subject=subject, claims=claims,
                                      link_by_email=link_by_email, provision=provision)
    except Conflict:
        return await users.user_id_by_identity_hot(grant.tx, idp_id, subject)  # the other one's, committed


async def _first_sight(grant: Grant, *, idp_id: str, subject: str, claims: Mapping[str, Any], link_by_email: bool,
                       provision: bool) -> str | None:
    verified = claims.get("email_verified") is True  # never link on, nor keep, an unverified email
    email = claims.get("email") if isinstance(claims.get("email"), str) and verified else None
    user_id = None
    if link_by_email and email:
        matches = await users.ids_by_email_hot(grant.tx, email)
        user_id = matches[0] if len(matches) == 1 else None
    if user_id is None and provision:
        user_id = await users.add_user_hot(grant.tx, email=email, display_name=email or subject, now=grant.now)
    if user_id is None:
        return None
    kept = {k: claims[k] for k in ("iss", "sub", "email_verified") if k in claims} | ({"email": email} if email else {})
    await users.add_identity_hot(grant.tx, user_id=user_id, idp_id=idp_id, subject=subject, email=email, claims=kept,
                                 now=grant.now)
    return user_id
