"""Claims from the IdP's UserInfo endpoint (OIDC Core §5.3), for ID tokens that carry only the subject.

Many providers put the profile, email and group claims of the granted scopes only at UserInfo when
an access token is issued too (OIDC Core §5.4 allows it; oidc-provider's default, Okta's org server).
The connector asks UserInfo when the ID token lacks a claim the broker maps (``[idps.claims]``) or
when configured to, and merges:

- the response must be a JSON object whose ``sub`` equals the ID token's exactly (§5.3.2: otherwise
  the response MUST NOT be used): ``InvalidIdToken``, and nobody signs in;
- the ID token's claims win; UserInfo only fills what the ID token lacks, and ``email_verified`` is
  taken with the ``email`` it speaks for (OIDC Core §5.1);
- the registered JWT claims (``iss``, ``aud``, ``exp``, ``nonce``, ...) are never taken from UserInfo.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from broker.federation.errors import InvalidIdToken
from broker.federation.idtoken import VerifiedClaims

# Claims only the verified ID token may supply.
TOKEN_ONLY = frozenset({"iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "azp", "at_hash", "c_hash", "auth_time",
                        "acr", "amr", "sid", "jti", "tid", "oid"})


def missing(claims: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    """Which of ``names`` the claims lack (absent or null)."""
    return [name for name in dict.fromkeys(names) if claims.get(name) is None]


def merged(claims: VerifiedClaims, userinfo: Any) -> VerifiedClaims:
    """The ID token's claims with what UserInfo adds; ``InvalidIdToken`` when UserInfo names another user."""
    if not isinstance(userinfo, dict):
        raise InvalidIdToken("the userinfo response is not a JSON object")
    if not isinstance(userinfo.get("sub"), str) or userinfo["sub"] != claims.get("sub"):
        raise InvalidIdToken("the userinfo response is about another subject")  # OIDC Core §5.3.2
    added = {name: value for name, value in userinfo.items()
             if name not in TOKEN_ONLY and claims.get(name) is None and value is not None}
    result = {**claims, **added}
    if "email" in added:  # §5.1: email_verified speaks for its own email, so both come from UserInfo
        result.pop("email_verified", None)
        if userinfo.get("email_verified") is not None:
            result["email_verified"] = userinfo["email_verified"]
    return VerifiedClaims(result)
