"""Bearer token extraction for the userinfo endpoint (RFC 6750 §2)."""

from __future__ import annotations

from broker.testidp.errors import InvalidRequest, InvalidToken, MissingToken
from broker.testidp.params import ProviderParams


def bearer_token(authorization: str | None, form: ProviderParams | None) -> str:
    """The access token from ``Authorization: Bearer`` or a form body's ``access_token``.

    Raises ``MissingToken`` when neither is present, ``InvalidRequest`` when both are
    (RFC 6750 §2: clients MUST NOT use more than one method), ``InvalidToken`` for another scheme.
    """
    posted = form.get("access_token") if form is not None else None
    if authorization is not None and posted is not None:
        raise InvalidRequest("send the access token in one place only")  # RFC 6750 §2
    if posted is not None:
        return posted  # RFC 6750 §2.2
    if authorization is None:
        raise MissingToken("an access token is required")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("the Authorization header must carry a Bearer token")  # RFC 6750 §2.1
    return token.strip()
