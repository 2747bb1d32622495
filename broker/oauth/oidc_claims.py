"""The OpenID Connect scopes a client asked for, and the claims about the user they release.

Shared by ID tokens (OIDC Core §2) and the UserInfo endpoint (OIDC Core §5.3): both release
``email`` and ``email_verified`` for the ``email`` scope and ``name`` for ``profile`` (§5.4).
Nothing is released unless the request asked for ``openid``: without it, it is not an OIDC request
(§3.1.2.1) and the other two scopes mean nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from broker.storage import users
from broker.storage.models import User
from broker.storage.users import Account

OIDC_SCOPES = frozenset({"openid", "profile", "email"})


def requested(scope_tokens: Iterable[str]) -> frozenset[str]:
    """The OIDC scopes among ``scope_tokens``; empty unless ``openid`` is one (OIDC Core §3.1.2.1)."""
    wanted = frozenset(scope_tokens) & OIDC_SCOPES
    return wanted if "openid" in wanted else frozenset()


def stored(oidc_scopes: frozenset[str]) -> str | None:
    """The column value: space-separated and sorted, NULL when no ID token is due."""
    return " ".join(sorted(oidc_scopes)) if "openid" in oidc_scopes else None


def loaded(value: str | None) -> frozenset[str]:
    return requested((value or "").split())


def user_claims(session: Session, user: User | Account, oidc_scopes: frozenset[str]) -> dict[str, Any]:
    """``email``/``email_verified`` and ``name`` as the scopes allow (OIDC Core §5.4); never ``sub``."""
    claims: dict[str, Any] = {}
    if "email" in oidc_scopes and user.email:
        claims["email"] = user.email
        claims["email_verified"] = _email_verified(session, user)
    if "profile" in oidc_scopes and user.display_name:
        claims["name"] = user.display_name
    return claims


def account_claims(account: Account, oidc_scopes: frozenset[str]) -> dict[str, Any]:
    """``user_claims`` of an ``Account``, which carries its latest sign-in already."""
    claims: dict[str, Any] = {}
    if "email" in oidc_scopes and account.email:
        claims["email"] = account.email
        verified = (account.login_email == account.email and account.login_claims is not None
                    and account.login_claims.get("email_verified") is True)
        claims["email_verified"] = verified  # OIDC Core §5.1: that sign-in speaks only for its own address
    if "profile" in oidc_scopes and account.display_name:
        claims["name"] = account.display_name
    return claims


def _email_verified(session: Session, user: User | Account) -> bool:
    """What the IdP of the user's latest sign-in said about this address (the connector's verdict)."""
    latest = users.latest_login(session, user.id)
    if latest is None or latest.email != user.email:  # OIDC Core §5.1: it speaks only for that address
        return False
    return latest.claims.get("email_verified") is True
