"""The access token a request presents to the broker's own APIs (the admin API, UserInfo): ``Authorization:
Bearer`` (RFC 6750 §2.1), or ``Authorization: DPoP`` with its proof (RFC 9449 §7.1); and a refusal's challenges."""

from __future__ import annotations

from collections.abc import Collection
from typing import TypeVar
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response

from broker.oauth.bearer import BearerError, DpopRequest
from broker.resource.metadata import www_authenticate_dpop

R = TypeVar("R", bound=Response)


def presented(request: Request, issuer: str) -> tuple[str | None, DpopRequest | None]:
    """The token of the (first) ``Authorization`` header, and for the DPoP scheme the request its proof must match."""
    values = request.headers.getlist("authorization")
    scheme, _, token = (values[0] if values else "").strip().partition(" ")
    if scheme.lower() == "dpop":
        return token.strip() or None, DpopRequest(proofs=tuple(request.headers.getlist("dpop")),
                                                  method=request.method, url=public_url(request, issuer))
    return (token.strip() or None) if scheme.lower() == "bearer" else None, None


def public_url(request: Request, issuer: str) -> str:
    """The URL clients address this request to: the issuer + the path as sent (still percent-encoded, as in
    ``htu``), as the token endpoint's is the issuer + ``/token``."""
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) and raw_path else quote(request.url.path)
    return issuer + path.partition("?")[0]  # some servers put the query in raw_path; htu has none


def with_dpop_challenge(response: R, refused: BearerError, dpop: DpopRequest | None, algorithms: Collection[str]) -> R:
    """``response`` (a refusal with its ``Bearer`` challenge) answering in the scheme the token came with: a DPoP
    request gets the ``DPoP`` challenge alone; a bearer one's 401 also the ``DPoP algs=...`` challenge (§7.1)."""
    algs = sorted(algorithms)
    if dpop is None:
        if response.status_code == 401:
            response.headers.append("www-authenticate", www_authenticate_dpop(algs))
        return response
    scope = refused.scope if refused.error == "insufficient_scope" else None
    try:
        challenge = www_authenticate_dpop(algs, None, refused.error, error_description=refused.description,
                                          scope=scope)
    except ValueError:  # a description that cannot be quoted: the error code alone still says what to do
        challenge = www_authenticate_dpop(algs, None, refused.error, scope=scope)
    response.headers["www-authenticate"] = challenge
    return response
