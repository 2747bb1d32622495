"""Who is calling: the bearer token of one IdP's SCIM client (RFC 7644 §2, RFC 6750).

Every configured token is compared, in constant time, whatever matches first, so timing tells
nothing about which token or how much of one matched. The token never reaches a log or the audit
trail; the caller is known from then on only by its IdP id.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from scim2_models import UnauthorizedException

from broker.config import ScimToken
from broker.lifecycle.scim.wire import ScimClient


def authenticate(tokens: Sequence[ScimToken], authorization: str | None) -> ScimClient:
    """The client whose token is in ``Authorization: Bearer <token>``; 401 otherwise."""
    scheme, _, value = (authorization or "").partition(" ")
    presented = value.strip()
    if scheme.lower() != "bearer" or not presented:
        raise UnauthorizedException(detail="a bearer token is required")
    digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
    matched: str | None = None
    for entry in tokens:
        secret = entry.token.get_secret_value().strip() if entry.token is not None else ""
        expected = hashlib.sha256(secret.encode("utf-8")).digest()
        # Hashing first makes the comparison length-independent; no early exit on a match.
        if hmac.compare_digest(digest, expected) and secret and matched is None:
            matched = entry.idp
    if matched is None:
        raise UnauthorizedException(detail="the bearer token is not valid")
    return ScimClient(matched)
