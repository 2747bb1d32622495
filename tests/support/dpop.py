"""A DPoP client key that makes proofs (RFC 9449 §4), for every DPoP test in the project.

``key = DpopKey()`` (ES256; also ``"ES384"``, ``"ES512"``, ``"EdDSA"``, ``"RS256"``, ``"PS256"``, ...)
holds a fresh private key; ``key.jkt`` is its RFC 7638 thumbprint (``cnf.jkt``, ``dpop_jkt``) and
``key.proof("POST", token_url)`` a well-formed proof. At a resource, pass ``access_token=`` to get
``ath``. Hostile knobs, each breaking one rule: ``typ``, ``alg`` (``"none"`` makes an unsigned proof,
``"HS256"`` one MACed with a secret), ``include_private`` (private members in ``jwk``), ``signed_by``
(another key signs; the header still shows this key), ``ath`` / ``iat`` / ``jti`` / ``nonce`` overrides,
``omit`` (claims to leave out) and ``extra_claims`` / ``extra_header``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from broker.resource.dpop import access_token_hash, jwk_thumbprint

_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
_UNSET: Any = object()
_HMAC_SECRET = b"a shared secret, 64 bytes so that HS512 too takes it quietly...."


def _generate(alg: str, rsa_bits: int) -> Any:
    if alg in _CURVES:
        return ec.generate_private_key(_CURVES[alg]())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg[:2] in ("RS", "PS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise ValueError(f"no key type for {alg}")


def _jwk(private_key: Any, *, private: bool) -> dict[str, Any]:
    key = private_key if private else private_key.public_key()
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return ECAlgorithm.to_jwk(key, as_dict=True)
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return OKPAlgorithm.to_jwk(key, as_dict=True)
    return RSAAlgorithm.to_jwk(key, as_dict=True)


class DpopKey:
    """One client's DPoP key pair and the proofs it signs."""

    def __init__(self, alg: str = "ES256", *, rsa_bits: int = 2048):
        self.alg = alg
        self.private_key = _generate(alg, rsa_bits)
        self.public_jwk = _jwk(self.private_key, private=False)
        self.jkt = jwk_thumbprint(self.public_jwk)

    def proof(self, htm: str, htu: str, *, access_token: str | None = None, ath: str | None = _UNSET,
              nonce: str | None = None, iat: float | None = None, jti: str | None = None,
              typ: str = "dpop+jwt", alg: str | None = None, include_private: bool = False,
              signed_by: DpopKey | None = None, omit: tuple[str, ...] = (),
              extra_claims: dict[str, Any] | None = None, extra_header: dict[str, Any] | None = None) -> str:
        """A compact DPoP proof for ``htm`` ``htu``; see the module docstring for the knobs."""
        claims: dict[str, Any] = {"jti": jti or secrets.token_urlsafe(16), "htm": htm, "htu": htu,
                                  "iat": int(time.time()) if iat is None else iat}
        if ath is _UNSET:
            ath = access_token_hash(access_token) if access_token is not None else None
        if ath is not None:
            claims["ath"] = ath
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(extra_claims or {})
        for name in omit:
            claims.pop(name, None)
        header = {"typ": typ, "jwk": _jwk(self.private_key, private=include_private), **(extra_header or {})}
        return self._sign(claims, header, alg or self.alg, signed_by or self)

    @staticmethod
    def _sign(claims: dict[str, Any], header: dict[str, Any], alg: str, signer: DpopKey) -> str:
        if alg == "none":
            return jwt.encode(claims, None, algorithm="none", headers=header)
        if alg.startswith("HS"):
            return jwt.encode(claims, _HMAC_SECRET, algorithm=alg, headers=header)
        return jwt.encode(claims, signer.private_key, algorithm=alg, headers=header)
