"""The key-free checks, as pure functions: header, claims, JWK set parsing."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from broker.resource.claims import CLOCK_SKEW, TokenRejected, check_header, verify_claims
from broker.resource.jwks import parse_jwks

ISSUER = "http://127.0.0.1:8000"
RESOURCE = "http://127.0.0.1:8000/demo/mcp"
NOW = 1_800_000_000
ALGS = frozenset({"ES256", "RS256"})


def claims(**overrides: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "sub": "alice", "aud": RESOURCE, "client_id": "c1", "scope": "tools:read tools:call",
            "jti": "j1", "iat": NOW, "exp": NOW + 300, "auth_time": NOW - 5, "acr": "urn:x", "sid": "s1",
            "email": "alice@example.com"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def verify(c: dict[str, Any], now: float = NOW) -> Any:
    return verify_claims(c, issuer=ISSUER, resource=RESOURCE, now=now)


def test_verified_claims_carry_every_field() -> None:
    v = verify(claims())
    assert (v.issuer, v.subject, v.audience, v.client_id) == (ISSUER, "alice", RESOURCE, "c1")
    assert v.scopes == ("tools:read", "tools:call")
    assert (v.jwt_id, v.issued_at, v.expires_at) == ("j1", NOW, NOW + 300)
    assert (v.auth_time, v.acr, v.sid, v.email) == (NOW - 5, "urn:x", "s1", "alice@example.com")
    assert v.claims["client_id"] == "c1"


def test_empty_scope_is_no_scopes() -> None:
    assert verify(claims(scope="")).scopes == ()


@pytest.mark.parametrize("overrides,reason", [
    ({"iss": "http://127.0.0.1:8000/"}, "iss is not the broker"),
    ({"iss": None}, "iss is not the broker"),
    ({"aud": "http://127.0.0.1:8000/other"}, "aud is not this resource"),
    ({"aud": ["http://127.0.0.1:8000/other"]}, "aud is not this resource"),
    ({"aud": {"x": RESOURCE}}, "aud is not this resource"),
    ({"exp": NOW - CLOCK_SKEW}, "token expired"),
    ({"exp": float("inf")}, "exp missing or not a number"),
    ({"exp": float("nan")}, "exp missing or not a number"),
    ({"exp": True}, "exp missing or not a number"),
    ({"exp": "1900000000"}, "exp missing or not a number"),
    ({"iat": NOW + CLOCK_SKEW + 1}, "iat in the future"),
    ({"iat": None}, "iat missing or not a number"),
    ({"nbf": NOW + CLOCK_SKEW + 1}, "token not yet valid"),
    ({"sub": ""}, "sub missing"),
    ({"sub": 7}, "sub missing"),
    ({"client_id": None}, "client_id missing"),
    ({"jti": None}, "jti missing"),
    ({"scope": None}, "scope missing"),
    ({"scope": ["tools:read"]}, "scope missing"),
])
def test_each_claim_check_has_its_reason(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(TokenRejected) as rejected:
        verify(claims(**overrides))
    assert rejected.value.reason == reason


def test_clock_skew_applies_to_exp_and_iat() -> None:
    verify(claims(exp=NOW - CLOCK_SKEW + 1))
    verify(claims(iat=NOW + CLOCK_SKEW))
    with pytest.raises(TokenRejected):
        verify_claims(claims(exp=NOW - 1), issuer=ISSUER, resource=RESOURCE, now=NOW, clock_skew=0)


@pytest.mark.parametrize("header,reason", [
    ({"alg": "ES256", "typ": "JWT", "kid": "k"}, "typ is not at+jwt"),
    ({"alg": "ES256", "kid": "k"}, "typ is not at+jwt"),
    ({"alg": "ES256", "typ": ["at+jwt"], "kid": "k"}, "typ is not at+jwt"),
    ({"alg": "none", "typ": "at+jwt", "kid": "k"}, "alg not allowed"),
    ({"alg": "HS256", "typ": "at+jwt", "kid": "k"}, "alg not allowed"),
    ({"alg": "PS256", "typ": "at+jwt", "kid": "k"}, "alg not allowed"),
    ({"typ": "at+jwt", "kid": "k"}, "alg not allowed"),
    ({"alg": "ES256", "typ": "at+jwt"}, "kid missing"),
    ({"alg": "ES256", "typ": "at+jwt", "kid": ""}, "kid missing"),
    ({"alg": "ES256", "typ": "at+jwt", "kid": 5}, "kid missing"),
    ({"alg": "ES256", "typ": "at+jwt", "kid": "k", "crit": ["b64"]}, "crit header not supported"),
])
def test_each_header_check_has_its_reason(header: dict[str, Any], reason: str) -> None:
    with pytest.raises(TokenRejected) as rejected:
        check_header(header, ALGS)
    assert rejected.value.reason == reason


def test_good_header_gives_alg_and_kid() -> None:
    assert check_header({"alg": "RS256", "typ": "application/at+jwt", "kid": "k1"}, ALGS) == ("RS256", "k1")


def _ec_jwk(**extra: Any) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    return {**public, **extra}


def test_parse_jwks_keeps_signing_keys_by_kid_and_skips_the_rest() -> None:
    document = {"keys": [
        _ec_jwk(kid="good", alg="ES256", use="sig"),
        _ec_jwk(kid="no-use"),
        _ec_jwk(alg="ES256"),  # no kid
        _ec_jwk(kid="enc", use="enc"),
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},  # a symmetric key never belongs here
        {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "!!", "y": "!!"},
        {"kty": "RSA", "kid": "weird-alg", "alg": "HS256", "n": "AQAB", "e": "AQAB"},
        "not a key",
    ]}
    keys = parse_jwks(document)
    assert sorted(keys) == ["good", "no-use"]
    assert keys["good"].algorithm_name == "ES256"


@pytest.mark.parametrize("document", [None, [], {}, {"keys": "x"}])
def test_parse_jwks_refuses_what_is_not_a_jwk_set(document: Any) -> None:
    with pytest.raises(ValueError):
        parse_jwks(document)
