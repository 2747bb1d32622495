"""Which upstream identity provider a user signs in with, when several are configured.

One IdP: always that one. Several: the domain of ``login_hint`` (or of an email the user types on
the picker page) chooses the IdP whose ``email_domains`` list it; otherwise the user picks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from broker.config import IdpSettings


@dataclass(frozen=True)
class Choice:
    id: str
    display_name: str


def choices(idps: Sequence[IdpSettings]) -> list[Choice]:
    return [Choice(idp.id, idp.display_name or idp.id) for idp in idps]


def by_email(idps: Sequence[IdpSettings], email_or_hint: str | None) -> str | None:
    """The IdP serving this email's domain, or None."""
    if not email_or_hint or "@" not in email_or_hint:
        return None
    domain = email_or_hint.rsplit("@", 1)[1].strip().lower().rstrip(".")
    for idp in idps:
        if domain in {d.lower().rstrip(".") for d in idp.email_domains}:
            return idp.id
    return None


def automatic(idps: Sequence[IdpSettings], login_hint: str | None) -> str | None:
    """The IdP to use without asking, or None when the user must pick."""
    if len(idps) == 1:
        return idps[0].id
    return by_email(idps, login_hint)
