"""DPoP (RFC 9449) at the token endpoint: the proof, its single use, and the keys grants are bound to.

The proof is checked before the transaction (``TokenProofs.check``: ``broker.resource.dpop`` does §4.3's
stateless checks, this module the nonce of §8); in the transaction its ``jti`` is spent first (``spend``), in
the database every instance shares, so a proof works once. A grant then compares the proof's key with
whatever it is bound to (``bound_to``: a code's ``dpop_jkt``, a family's key, an ID-JAG's ``cnf.jkt``) and
refuses a request without a proof where the client or the MCP server requires one (``client_rule``,
``server_rule``).
Without a ``DPoP`` header none of this runs: the token side does what it did before.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from typing import ParamSpec

from broker.config import Settings
from broker.oauth.dpop_nonces import DpopNonces
from broker.oauth.engine.context import Grant, Undone, VerifiedClient
from broker.oauth.errors import InvalidDpopProofError, InvalidGrantError, OAuth2Error, UseDpopNonceError
from broker.registry.servers import Server
from broker.resource.dpop import USE_DPOP_NONCE, DpopError, DpopProof, check_proof
from broker.storage import grants as grant_repo

PURPOSE = "dpop-proof"
P = ParamSpec("P")


class TokenProofs:
    """What a proof at this broker's token endpoint must be: for ``POST <issuer>/token``, signed with one of
    ``[dpop] algorithms``, made within ``iat_window`` seconds of now, and carrying a nonce when they are on."""

    def __init__(self, settings: Settings, nonce_key: bytes):
        self.htu = f"{settings.issuer}/token"
        self.algorithms = frozenset(settings.dpop.algorithms)
        self.window = settings.dpop.iat_window
        self.skew = settings.tokens.clock_skew
        self.nonces = DpopNonces(nonce_key, settings.dpop.nonce_lifetime) if settings.dpop.require_nonce else None

    def check(self, values: tuple[str, ...], now: dt.datetime) -> DpopProof:
        """The proof in ``values`` (every ``DPoP`` header sent), else the refusal: invalid proof or use a nonce."""
        seconds = now.timestamp()
        try:
            proof = check_proof(values, htm="POST", htu=self.htu, now=seconds, algorithms=self.algorithms,
                                iat_window=self.window)
        except DpopError as exc:
            if exc.error == USE_DPOP_NONCE and self.nonces is not None:
                raise UseDpopNonceError(exc.description, self.nonces.issue(seconds)) from None
            raise InvalidDpopProofError(exc.description) from None
        if self.nonces is not None and not self.nonces.accepts(proof.nonce, seconds):
            described = "the DPoP proof has no nonce" if proof.nonce is None else "the DPoP nonce is invalid or expired"
            raise UseDpopNonceError(described, self.nonces.issue(seconds))  # RFC 9449 §8
        return proof

    def jti_record(self, proof: DpopProof) -> tuple[str, dt.datetime]:
        """The ``seen_jtis`` key of ``proof`` (its key and ``jti``) and when it may be forgotten: once no instance
        would accept its ``iat`` any more. The token endpoint and the broker's own APIs share the record."""
        key = hashlib.sha256(f"{PURPOSE}\0{proof.jkt}\0{proof.jti}".encode()).hexdigest()
        return key, dt.datetime.fromtimestamp(proof.iat + self.window + self.skew, dt.UTC)

    def next_nonce(self, now: dt.datetime) -> str | None:
        """A fresh nonce for a successful answer's ``DPoP-Nonce`` (§8.2), when nonces are on."""
        return self.nonces.issue(now.timestamp()) if self.nonces is not None else None


async def spend(grant: Grant, proof: DpopProof) -> None:
    """Record the proof's ``jti`` (for its key) until no instance would accept its ``iat`` any more; a second use,
    here or at any other instance, is refused (RFC 9449 §11.1)."""
    key, expires = grant.engine.dpop.jti_record(proof)
    if not await grant_repo.first_use_of_jti_hot(grant.tx, key, PURPOSE, expires):
        raise InvalidDpopProofError("the DPoP proof was already used")


def bound_to(grant: Grant, jkt: str | None, what: str) -> None:
    """``InvalidGrantError`` unless ``jkt`` is None or this request's proof is by that key (RFC 9449 §5, §10)."""
    if jkt is None:
        return
    if grant.proof is None:
        raise InvalidGrantError(f"{what} is bound to a DPoP key: send a DPoP proof made with it")
    if grant.proof.jkt != jkt:
        raise InvalidGrantError(f"{what} is bound to another DPoP key")


def client_rule(grant: Grant, client: VerifiedClient) -> None:
    """A client registered with ``dpop_bound_access_tokens`` gets no token without a proof (RFC 9449 §5.2)."""
    if grant.proof is None and client.row.dpop_bound_access_tokens:
        raise InvalidGrantError("this client is registered for DPoP-bound access tokens only: send a DPoP proof")


def server_rule(grant: Grant, server: Server) -> None:
    """An MCP server that requires DPoP never gets a bearer token issued for it."""
    if grant.proof is None and server.require_dpop:
        raise InvalidGrantError("this MCP server accepts DPoP-bound access tokens only: send a DPoP proof")


def refresh_binding(grant: Grant, client: VerifiedClient) -> str | None:
    """The key a new family's refresh tokens are bound to: a public client's proof key (RFC 9449 §5); a confidential
    client's refresh tokens are bound to its credentials already."""
    return grant.proof.jkt if grant.proof is not None and client.method == "none" else None


async def bind_family(grant: Grant, client: VerifiedClient, family_id: str) -> None:
    """A public client's first proof on an unbound family binds the refresh tokens it gets from now on (§5)."""
    binding = refresh_binding(grant, client)
    if binding is not None:
        await grant_repo.bind_family_hot(grant.tx, family_id, binding)


def undone_unless(check: Callable[P, None], *args: P.args, **kwargs: P.kwargs) -> None:
    """``check``, whose refusal must leave no trace: a refused bound code stays redeemable by its key's holder."""
    try:
        check(*args, **kwargs)
    except OAuth2Error as error:
        raise Undone(error) from None
