"""Reading identity claims out of verified ID token claims (OIDC Core §5.1), shared by connectors.

Claims here are already verified; what remains is their shape. A claim of the wrong type is
treated as absent (and, for ``groups``, logged), never as an error: a login must not fail
because an IdP sends ``email_verified: "true"``, and policy must not see a group it cannot trust.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from broker.federation.idtoken import VerifiedClaims

log = logging.getLogger("broker.federation")


def string(claims: VerifiedClaims, name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and value else None


def boolean(claims: VerifiedClaims, name: str) -> bool | None:
    value = claims.get(name)
    return value if isinstance(value, bool) else None


DATETIME_SECONDS = range(-62_135_596_800, 253_402_300_800)  # 0001-01-01 to 9999-12-31 UTC: what a datetime holds


def timestamp(claims: VerifiedClaims, name: str) -> int | None:
    """A NumericDate claim (RFC 7519 §2) in whole seconds; None unless a number a datetime can hold."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value) if int(value) in DATETIME_SECONDS else None


def strings(claims: VerifiedClaims, name: str) -> tuple[str, ...]:
    """A list-of-strings claim; absent or malformed reads as empty, other entries are dropped."""
    value = claims.get(name)
    if not isinstance(value, list):
        return ()
    return tuple(dict.fromkeys(v for v in value if isinstance(v, str) and v))


def display_name(claims: VerifiedClaims, name: str = "name") -> str | None:
    """Claim ``name``, or ``preferred_username`` when the IdP sends no name (OIDC Core §5.1)."""
    return string(claims, name) or string(claims, "preferred_username")


def groups(claims: VerifiedClaims, name: str, *, idp_id: str) -> tuple[str, ...]:
    """Group names from claim ``name``; absent means none; a non-list is ignored with a warning."""
    value: Any = claims.get(name)
    if value is None:
        return ()
    if not isinstance(value, list):
        log.warning("groups claim is not a list; treating it as empty", extra={"idp": idp_id, "claim": name})
        return ()
    if not all(isinstance(v, str) and v for v in value):
        log.warning("groups claim has entries that are not names; dropped them", extra={"idp": idp_id, "claim": name})
    return strings(claims, name)
