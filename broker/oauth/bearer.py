"""Bearer tokens presented to the broker itself (the admin API, UserInfo): who is calling, with which scopes.

The same rules as introspection (``oauth.verification``), in a session of the cold lane: a token this
broker signed, unexpired, not revoked, its client still active, its audience exactly the API; then the
scope the operation needs (RFC 6750 §3.1).

DPoP (RFC 9449 §7): a token bound to a key (``cnf.jkt``) is refused as a bearer token; with ``Authorization:
DPoP`` it needs a proof for this request (method, public URL, ``ath`` of the token) by that key, used once: its
``jti`` is spent in ``seen_jtis`` as at the token endpoint, so a proof works once across every instance.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from broker.oauth.engine.dpop import PURPOSE
from broker.oauth.verification import standing_allows, user_of, verify_signed
from broker.registry import servers
from broker.resource.dpop import INVALID_DPOP_PROOF, DpopError, DpopProof, check_proof
from broker.storage import grants


class BearerError(Exception):
    """An RFC 6750 error: ``invalid_token`` (401) or ``insufficient_scope`` (403)."""

    def __init__(self, error: str, description: str, status_code: int, scope: str | None = None):
        super().__init__(description)
        self.error, self.description, self.status_code, self.scope = error, description, status_code, scope


@dataclass(frozen=True)
class DpopRequest:
    """A request with ``Authorization: DPoP``: every ``DPoP`` header value it sent, its method and its URL as
    clients address the broker (the issuer + the path as sent)."""

    proofs: tuple[str, ...]
    method: str
    url: str


@dataclass(frozen=True)
class Caller:
    client_id: str
    subject: str
    scopes: frozenset[str]
    jti: str


def authenticate(session: Session, engine: Any, unverified_token: str | None, audience: str, required_scope: str,
                 now: dt.datetime, dpop: DpopRequest | None = None) -> Caller:
    """The caller ``unverified_token`` names, for ``audience`` with ``required_scope``; ``BearerError`` otherwise.
    ``engine``: the token engine (its keys, issuer, verified-token cache and DPoP settings); ``dpop``: the request,
    when the token came with the DPoP scheme (None: as a bearer token)."""
    if not unverified_token:
        raise BearerError("invalid_request", "a bearer token is required", 401, required_scope)
    proof = _checked_proof(engine, unverified_token, dpop, now, required_scope) if dpop is not None else None
    published = engine.keyring.jwks(session, now=now)["keys"]
    claims = verify_signed(published, engine.issuer, engine.verified_access_tokens, unverified_token, now)
    if claims is None or claims.get("aud") != audience:  # RFC 9068 §4: aud must be this API
        raise BearerError("invalid_token", "the access token is not valid for this API", 401, required_scope)
    _check_binding(claims, proof, required_scope)
    if not _active(session, engine.issuer, claims):
        raise BearerError("invalid_token", "the access token was revoked", 401, required_scope)
    scopes = frozenset(str(claims.get("scope", "")).split())
    if required_scope not in scopes:
        raise BearerError("insufficient_scope", f"this operation needs the {required_scope} scope", 403,
                          required_scope)
    if proof is not None:
        _spend(session, engine, proof, required_scope)
    return Caller(client_id=claims["client_id"], subject=claims["sub"], scopes=scopes, jti=claims["jti"])


def _active(session: Session, issuer: str, claims: dict[str, Any]) -> bool:
    standing = grants.access_token_standing(session, jti=claims["jti"], client_id=claims["client_id"],
                                            family_id=claims.get("sid"), user_id=user_of(claims))
    if not standing_allows(claims, standing):
        return False
    try:
        servers.resolve(session, claims["aud"], issuer, include_admin_api=True, include_sign_in=True)
    except servers.UnknownResource:
        return False
    return True


def _checked_proof(engine: Any, token: str, dpop: DpopRequest, now: dt.datetime, required_scope: str) -> DpopProof:
    """The proof of this request (RFC 9449 §4.3, with ``ath`` of ``token``), else ``invalid_dpop_proof``."""
    proofs = engine.dpop
    try:
        return check_proof(dpop.proofs, htm=dpop.method, htu=dpop.url, now=now.timestamp(),
                           algorithms=proofs.algorithms, iat_window=proofs.window, access_token=token)
    except DpopError as exc:
        raise BearerError(INVALID_DPOP_PROOF, exc.description, 401, required_scope) from None


def _check_binding(claims: dict[str, Any], proof: DpopProof | None, required_scope: str) -> None:
    """A DPoP-bound token comes with a proof by its key, and the DPoP scheme with a bound token (§7.1, §7.2)."""
    cnf = claims.get("cnf")
    bound_jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if proof is None and bound_jkt is not None:
        raise BearerError("invalid_token", "DPoP-bound token sent as Bearer", 401, required_scope)
    if proof is not None and bound_jkt is None:
        raise BearerError("invalid_token", "token is not DPoP-bound", 401, required_scope)
    if proof is not None and proof.jkt != bound_jkt:
        raise BearerError(INVALID_DPOP_PROOF, "proof key is not the key the token is bound to", 401, required_scope)


def _spend(session: Session, engine: Any, proof: DpopProof, required_scope: str) -> None:
    """Each proof once, here or at any instance (RFC 9449 §11.1), in the same store as the token endpoint's."""
    key, expires = engine.dpop.jti_record(proof)
    if not grants.first_use_of_jti(session, key, PURPOSE, expires):
        raise BearerError(INVALID_DPOP_PROOF, "proof already used", 401, required_scope)
