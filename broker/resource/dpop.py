"""DPoP proof checking (RFC 9449 §4.3), shared by the broker's token endpoint and by MCP servers.

``check_proof`` takes every ``DPoP`` header value of one request, the request's method and URL, and
the time; it returns a ``DpopProof`` (the key's RFC 7638 thumbprint ``jkt``, ``jti``, ``iat``,
``nonce``, ``htm``, ``htu``) or raises ``DpopError`` carrying the OAuth error code
(``invalid_dpop_proof`` or ``use_dpop_nonce``) and a description that is safe to log and to send.

What it does not do, because it needs state the caller owns: single use of ``jti`` (a store kept for
``iat_window`` seconds on each side of ``iat``), the ``nonce`` (returned, for the caller to check and
to raise ``DpopError(USE_DPOP_NONCE, ...)``), and comparing ``jkt`` with the token's ``cnf.jkt``.
Pure functions: no I/O, no clock of its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.resource.claims import ASYMMETRIC_ALGORITHMS

INVALID_DPOP_PROOF = "invalid_dpop_proof"  # RFC 9449 §5, §7.1, §12.2
USE_DPOP_NONCE = "use_dpop_nonce"  # RFC 9449 §8, §9
DPOP_TYPE = "dpop+jwt"  # RFC 9449 §4.2
# Asymmetric JWS algorithms only (RFC 9449 §4.3 step 5: never none, never a MAC). Each needs a key type,
# and for EC the one curve it is defined on (RFC 7518 §3.4), so a header cannot pair ES256 with P-384.
# The same set as access tokens: validate a configured list with broker.resource.claims.allowed_algorithms.
DPOP_ALGORITHMS = ASYMMETRIC_ALGORITHMS
_KEY_TYPE = {"ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
             "EdDSA": ("OKP", None), "RS256": ("RSA", None), "RS384": ("RSA", None), "RS512": ("RSA", None),
             "PS256": ("RSA", None), "PS384": ("RSA", None), "PS512": ("RSA", None)}
# RFC 7518 §6.2.2, §6.3.2, RFC 8037 §2: members only a private key has ("k": a symmetric key).
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# RFC 7638 §3.2, RFC 8037 §2: the required members that make the thumbprint.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
_OKP_SIGNING_CURVES = ("Ed25519", "Ed448")
IAT_WINDOW = 300  # seconds either side of now (SEP-1932: ±5 minutes); also how long a jti must be kept
MAX_PROOF_LENGTH = 8 * 1024  # an RSA-4096 proof is under 2 KB; do not parse megabytes of base64
MAX_JTI_LENGTH = 256
MIN_RSA_BITS = 2048
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Signature only: the claims are checked below, one rule per line.
_SIGNATURE_ONLY: Any = {"verify_signature": True, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
                        "verify_aud": False, "verify_iss": False, "verify_sub": False, "verify_jti": False,
                        "require": []}


class DpopError(Exception):
    """A DPoP proof was refused. ``error`` is the OAuth error code to answer with (``check_proof`` raises
    ``invalid_dpop_proof``; callers raise ``use_dpop_nonce`` for a nonce, and ``BrokerTokenVerifier``
    ``invalid_token`` for the token); ``description`` says which check failed, never quoting the proof."""

    def __init__(self, error: str, description: str):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


@dataclass(frozen=True)
class DpopProof:
    """A proof that passed every stateless check of RFC 9449 §4.3.

    ``jkt`` is the RFC 7638 SHA-256 thumbprint of the proof's key (what ``cnf.jkt`` and ``dpop_jkt`` hold);
    ``jti`` and ``iat`` are for the caller's replay store; ``nonce`` is the proof's ``nonce`` claim, or None,
    for the caller to check; ``htm`` and ``htu`` are the claims as sent; ``jwk`` is the public key.
    """

    jkt: str
    jti: str
    iat: int
    nonce: str | None
    htm: str
    htu: str
    jwk: Mapping[str, Any]


def check_proof(header_values: Sequence[str], *, htm: str, htu: str, now: float,
                algorithms: Collection[str] = DPOP_ALGORITHMS, iat_window: float = IAT_WINDOW,
                access_token: str | None = None) -> DpopProof:
    """Check the DPoP proof of one request (RFC 9449 §4.3 steps 1-9 and 11, and 12's ``ath``).

    ``header_values``: every ``DPoP`` header field value of the request (exactly one is allowed).
    ``htm``: the request's method; ``htu``: the URL the request was sent to, as this server is known to
    its clients (its public scheme and host; a query or fragment is ignored). ``now``: the current Unix
    time. ``algorithms``: the accepted ``alg`` values (any outside ``DPOP_ALGORITHMS`` are ignored).
    ``iat_window``: seconds ``iat`` may be before or after ``now``. ``access_token``: at a resource
    server, the token the proof comes with: ``ath`` must then be its hash (§4.3 step 12); None at the
    token endpoint.
    Raises ``DpopError``; the caller still checks ``jti`` replay, the nonce and ``cnf.jkt``.
    """
    unverified_proof = _single_proof(header_values)
    alg, jwk = _checked_header(unverified_proof, algorithms)
    claims = _verified_signature(unverified_proof, alg, jwk)
    jti, iat = _identity_claims(claims)
    nonce = _optional_string(claims, "nonce")
    # RFC 9449 §4.3 step 8: the method is compared exactly (HTTP methods are case-sensitive).
    _require(claims.get("htm") == htm, "htm does not match the request method")
    # RFC 9449 §4.3 step 9: same URI after RFC 3986 §6.2.2/§6.2.3 normalisation, query and fragment ignored.
    _require(isinstance(claims.get("htu"), str) and _normalised_or_none(claims["htu"]) == normalise_htu(htu),
             "htu does not match the request URL")
    # RFC 9449 §4.3 step 11: the proof was made within the window around now, not before, not after.
    _require(abs(now - iat) <= iat_window, "iat is outside the accepted window")
    if access_token is not None:
        # RFC 9449 §4.3 step 12 / §4.2: the proof names the token it comes with.
        _require(claims.get("ath") == access_token_hash(access_token), "ath does not match the access token")
    return DpopProof(jkt=jwk_thumbprint(jwk), jti=jti, iat=int(iat), nonce=nonce, htm=htm,
                     htu=claims["htu"], jwk=jwk)


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public EC, RSA or OKP key, base64url without padding."""
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None or not all(isinstance(jwk.get(m), str) for m in members):
        raise ValueError("not an EC, RSA or OKP public key with its required members")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def access_token_hash(access_token: str) -> str:
    """``ath`` (RFC 9449 §4.2): base64url(SHA-256(the ASCII access token)), without padding."""
    return _b64url(hashlib.sha256(access_token.encode("ascii", "replace")).digest())


def normalise_htu(url: str) -> str:
    """``url`` as ``htu`` is compared: scheme and host lower case, default port and query and fragment
    dropped, empty path as ``/``, dot segments removed, percent-encoding upper case (RFC 3986 §6.2.2-3).
    Raises ``ValueError`` for anything but an absolute http(s) URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError("not an absolute http(s) URL")
    host = parts.hostname  # already lower case
    host = f"[{host}]" if ":" in host else host
    port = parts.port  # raises ValueError for a port out of range
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"{parts.netloc.rpartition('@')[0]}@{netloc}"
    return urlunsplit(SplitResult(scheme, netloc, _normalised_path(parts.path), "", ""))


def _single_proof(header_values: Sequence[str]) -> str:
    # RFC 9449 §4.3 step 1: exactly one DPoP header; step 2: its value is one compact JWS.
    _require(not isinstance(header_values, str), "header values must be a sequence")
    _require(len(header_values) != 0, "no DPoP header")
    _require(len(header_values) == 1, "more than one DPoP header")
    value = header_values[0].strip()
    _require(len(value) <= MAX_PROOF_LENGTH, "DPoP proof too long")
    _require(_COMPACT_JWS.fullmatch(value) is not None, "DPoP header is not one compact JWS")
    return value


def _checked_header(unverified_proof: str, algorithms: Collection[str]) -> tuple[str, dict[str, Any]]:
    """``(alg, jwk)`` from the JOSE header, checked before the key in it is used."""
    header = _unverified_header(unverified_proof)
    # RFC 9449 §4.3 step 4: the explicit type keeps other JWTs (ID tokens, assertions) out.
    _require(header.get("typ") == DPOP_TYPE, "typ is not dpop+jwt")
    # RFC 9449 §4.3 step 5: an asymmetric algorithm we accept; none and HS* are never in the list.
    alg = header.get("alg")
    if not (isinstance(alg, str) and alg in algorithms and alg in DPOP_ALGORITHMS):
        raise DpopError(INVALID_DPOP_PROOF, "alg not allowed")
    # RFC 7515 §4.1.11: a critical extension we do not understand must be refused.
    _require("crit" not in header, "crit header not supported")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise DpopError(INVALID_DPOP_PROOF, "jwk missing")
    # RFC 9449 §4.3 step 7: the key is public; a private member means the client leaked its key.
    _require(not PRIVATE_JWK_MEMBERS & jwk.keys(), "jwk contains private key material")
    _require(_key_fits(alg, jwk), "jwk does not fit alg")
    return alg, jwk


def _unverified_header(unverified_proof: str) -> dict[str, Any]:
    encoded = unverified_proof.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, RecursionError):  # binascii.Error, UnicodeDecodeError, JSONDecodeError; JSON nested too deep
        raise DpopError(INVALID_DPOP_PROOF, "malformed DPoP proof") from None
    if not isinstance(header, dict):
        raise DpopError(INVALID_DPOP_PROOF, "malformed DPoP proof")
    return header


def _key_fits(alg: str, jwk: Mapping[str, Any]) -> bool:
    kty, crv = _KEY_TYPE[alg]
    if jwk.get("kty") != kty:
        return False
    if kty == "OKP":
        return jwk.get("crv") in _OKP_SIGNING_CURVES
    return crv is None or jwk.get("crv") == crv


def _verified_signature(unverified_proof: str, alg: str, jwk: dict[str, Any]) -> dict[str, Any]:
    """The claims, once the signature checks out with the header's own key (§4.3 step 6)."""
    try:
        key = jwt.PyJWK(jwk, algorithm=alg)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        raise DpopError(INVALID_DPOP_PROOF, "jwk is not a usable public key") from None
    # RFC 8725 §3.5 / NIST SP 800-131A: RSA keys shorter than 2048 bits are not accepted.
    _require(not isinstance(key.key, rsa.RSAPublicKey) or key.key.key_size >= MIN_RSA_BITS,
             "RSA key shorter than 2048 bits")
    try:
        claims = jwt.decode(unverified_proof, key=key.key, algorithms=[alg], options=_SIGNATURE_ONLY)
    except jwt.InvalidSignatureError:
        raise DpopError(INVALID_DPOP_PROOF, "bad DPoP proof signature") from None
    except jwt.PyJWTError:
        raise DpopError(INVALID_DPOP_PROOF, "malformed DPoP proof") from None
    _require(isinstance(claims, dict), "malformed DPoP proof")
    return claims


def _identity_claims(claims: Mapping[str, Any]) -> tuple[str, float]:
    """``(jti, iat)``, the claims every proof carries (RFC 9449 §4.2, §4.3 step 3)."""
    jti = claims.get("jti")
    if not (isinstance(jti, str) and 0 < len(jti) <= MAX_JTI_LENGTH):
        raise DpopError(INVALID_DPOP_PROOF, "jti missing or too long")
    iat = claims.get("iat")
    # JSON parsers accept NaN and Infinity: an iat of Infinity must not pass a window check.
    if not (isinstance(iat, int | float) and not isinstance(iat, bool) and math.isfinite(iat)):
        raise DpopError(INVALID_DPOP_PROOF, "iat missing or not a number")
    return jti, float(iat)


def _optional_string(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    _require(value is None or isinstance(value, str), f"{name} is not a string")
    return value


def _normalised_or_none(url: str) -> str | None:
    try:
        return normalise_htu(url)
    except ValueError:
        return None


def _normalised_path(path: str) -> str:
    # Characters a URI cannot hold (non-ASCII, spaces...) as their UTF-8 percent-encoding, as a URL parser
    # would send them; then every %XX in one spelling (RFC 3986 §6.2.2.1-2).
    path = re.sub(r"%[0-9a-fA-F]{2}", _percent, quote(path, safe="/%:@!$&'()*+,;=-._~"))
    segments: list[str] = []
    for segment in path.split("/")[1:] if path.startswith("/") else path.split("/"):
        if segment == "..":
            segments = segments[:-1]
        elif segment != ".":
            segments.append(segment)
    last = path.rsplit("/", 1)[-1]
    trailing = [""] if last in (".", "..") else []
    return "/" + "/".join(segments + trailing)


def _percent(match: re.Match[str]) -> str:
    """RFC 3986 §6.2.2.2: decode unreserved characters, upper-case the hex of the others."""
    char = chr(int(match.group(0)[1:], 16))
    return char if re.fullmatch(r"[A-Za-z0-9._~-]", char) else match.group(0).upper()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _require(condition: bool, description: str) -> None:
    if not condition:
        raise DpopError(INVALID_DPOP_PROOF, description)
