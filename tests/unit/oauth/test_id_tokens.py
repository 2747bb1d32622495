"""ID tokens: what ``IdTokens.issue`` signs, and every check of ``IdTokens.verify`` (both stores)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
from typing import Any

import jwt
import pytest

from broker.keys.crypto import Encryptor
from broker.keys.ring import KeyRing
from broker.oauth.id_tokens import IdTokenRejected, IdTokens, at_hash
from broker.storage.models import UpstreamIdentity, User

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
GRACE = dt.timedelta(seconds=360)
CLIENT = "client-1"


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing(Encryptor(os.urandom(32)))


@pytest.fixture
def id_tokens(settings, migrated, ring) -> IdTokens:
    with migrated.transaction() as session:
        ring.ensure(session, T0)
        session.add(User(id="u1", email="alice@example.com", display_name="Alice Anders"))
    return IdTokens(settings, ring)


def issue(migrated, id_tokens: IdTokens, scopes: set[str] = frozenset({"openid"}), **overrides: Any) -> str:
    values: dict[str, Any] = {"client_id": CLIENT, "oidc_scopes": frozenset(scopes), "nonce": "n-1",
                              "auth_time": T0 - dt.timedelta(minutes=1), "acr": "mfa", "access_token": "at.b.c",
                              "now": T0, **overrides}
    with migrated.transaction() as session:
        return id_tokens.issue(session, user=session.get(User, "u1"), **values)


def verify(migrated, id_tokens: IdTokens, token: str, *, client_id: str = CLIENT,
           now: dt.datetime = T0) -> dict[str, Any]:
    with migrated.sessions() as session:
        return id_tokens.verify(session, token, client_id=client_id, now=now, jwks_grace=GRACE)


def signed(migrated, ring: KeyRing, claims: dict[str, Any], typ: str = "JWT") -> str:
    with migrated.sessions() as session:
        return ring.active(session, T0).sign(claims, typ=typ)


def claims_for(settings, **overrides: Any) -> dict[str, Any]:
    iat = int(T0.timestamp())
    return {"iss": settings.issuer, "sub": "u1", "aud": CLIENT, "azp": CLIENT, "iat": iat, "exp": iat + 300,
            **overrides}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode())) if sign else ''}"


def rejected(migrated, id_tokens: IdTokens, token: str, **kwargs: Any) -> str:
    with pytest.raises(IdTokenRejected) as caught:
        verify(migrated, id_tokens, token, **kwargs)
    assert token not in caught.value.description  # never echo the token
    return caught.value.description


# ---------------------------------------------------------------- issue


def test_issued_claims(settings, migrated, id_tokens) -> None:
    token = issue(migrated, id_tokens)
    assert jwt.get_unverified_header(token)["typ"] == "JWT"
    claims = verify(migrated, id_tokens, token)
    assert claims["iss"] == settings.issuer and claims["sub"] == "u1"
    assert claims["aud"] == CLIENT and claims["azp"] == CLIENT
    assert claims["iat"] == int(T0.timestamp()) and claims["exp"] - claims["iat"] == settings.tokens.id_token_lifetime
    assert claims["auth_time"] == int(T0.timestamp()) - 60 and claims["acr"] == "mfa" and claims["nonce"] == "n-1"
    assert "email" not in claims and "name" not in claims


def test_at_hash_is_the_left_half_of_sha256(settings, migrated, id_tokens) -> None:
    claims = verify(migrated, id_tokens, issue(migrated, id_tokens, access_token="an-access-token"))
    expected = b64(hashlib.sha256(b"an-access-token").digest()[:16])  # OIDC Core §3.1.3.6
    assert claims["at_hash"] == expected == at_hash("an-access-token", "ES256")


def test_optional_claims_are_left_out_when_unknown(settings, migrated, id_tokens) -> None:
    claims = verify(migrated, id_tokens, issue(migrated, id_tokens, nonce=None, auth_time=None, acr=None,
                                               access_token=None))
    assert not {"nonce", "auth_time", "acr", "at_hash"} & set(claims)


def test_email_and_name_only_for_their_scopes(settings, migrated, id_tokens) -> None:
    claims = verify(migrated, id_tokens, issue(migrated, id_tokens, {"openid", "email"}))
    assert claims["email"] == "alice@example.com" and claims["email_verified"] is False  # no IdP vouched for it
    assert "name" not in claims
    claims = verify(migrated, id_tokens, issue(migrated, id_tokens, {"openid", "profile"}))
    assert claims["name"] == "Alice Anders" and "email" not in claims


def test_email_verified_comes_from_the_latest_upstream_sign_in(settings, migrated, id_tokens) -> None:
    with migrated.transaction() as session:
        session.add(UpstreamIdentity(user_id="u1", idp_id="old", subject="s0", email="alice@example.com",
                                     claims={"email_verified": False}, last_login_at=T0 - dt.timedelta(days=2)))
        session.add(UpstreamIdentity(user_id="u1", idp_id="corp", subject="s1", email="alice@example.com",
                                     claims={"email_verified": True}, last_login_at=T0 - dt.timedelta(days=1)))
    assert verify(migrated, id_tokens, issue(migrated, id_tokens, {"openid", "email"}))["email_verified"] is True
    with migrated.transaction() as session:  # a later sign-in vouching for another address says nothing of this one
        session.add(UpstreamIdentity(user_id="u1", idp_id="other", subject="s2", email="a@other.example",
                                     claims={"email_verified": True}, last_login_at=T0))
    assert verify(migrated, id_tokens, issue(migrated, id_tokens, {"openid", "email"}))["email_verified"] is False


# ---------------------------------------------------------------- verify: accepted


def test_a_list_audience_with_this_client_as_azp_is_accepted(settings, migrated, ring, id_tokens) -> None:
    token = signed(migrated, ring, claims_for(settings, aud=[CLIENT, "other"], azp=CLIENT))
    assert verify(migrated, id_tokens, token)["aud"] == [CLIENT, "other"]


def test_clock_skew_is_allowed_both_ways(settings, migrated, ring, id_tokens) -> None:
    skew = settings.tokens.clock_skew
    token = signed(migrated, ring, claims_for(settings))
    assert verify(migrated, id_tokens, token, now=T0 + dt.timedelta(seconds=300 + skew - 1))
    assert verify(migrated, id_tokens, token, now=T0 - dt.timedelta(seconds=skew))


def test_a_token_without_typ_is_accepted(settings, migrated, ring, id_tokens) -> None:
    with migrated.sessions() as session:
        key = ring.active(session, T0)
    token = jwt.encode(claims_for(settings), key.private_key, algorithm=key.algorithm,
                       headers={"kid": key.kid, "typ": None})
    assert "typ" not in jwt.get_unverified_header(token)
    assert verify(migrated, id_tokens, token)["sub"] == "u1"


# ---------------------------------------------------------------- verify: rejected


def test_wrong_audience(settings, migrated, id_tokens) -> None:
    assert "another client" in rejected(migrated, id_tokens, issue(migrated, id_tokens), client_id="client-2")


def test_several_audiences_need_this_client_as_azp(settings, migrated, ring, id_tokens) -> None:
    token = signed(migrated, ring, claims_for(settings, aud=[CLIENT, "other"], azp="other"))
    assert "authorized party" in rejected(migrated, id_tokens, token)
    token = signed(migrated, ring, {k: v for k, v in claims_for(settings, aud=[CLIENT, "other"]).items()
                                    if k != "azp"})
    assert "authorized party" in rejected(migrated, id_tokens, token)


def test_expired(settings, migrated, id_tokens) -> None:
    late = T0 + dt.timedelta(seconds=settings.tokens.id_token_lifetime + settings.tokens.clock_skew)
    assert "expired" in rejected(migrated, id_tokens, issue(migrated, id_tokens), now=late)


def test_issued_in_the_future(settings, migrated, id_tokens) -> None:
    future = T0 + dt.timedelta(seconds=settings.tokens.clock_skew + 1)
    assert "future" in rejected(migrated, id_tokens, issue(migrated, id_tokens, now=future))


@pytest.mark.parametrize("claim,value", [("exp", None), ("iat", None), ("exp", 1.5e9), ("iat", "1"), ("exp", True)])
def test_exp_and_iat_must_be_integers(settings, migrated, ring, id_tokens, claim, value) -> None:
    claims = claims_for(settings)
    if value is None:
        del claims[claim]
    else:
        claims[claim] = value
    assert claim in rejected(migrated, id_tokens, signed(migrated, ring, claims))


def test_alg_none(settings, migrated, ring, id_tokens) -> None:
    with migrated.sessions() as session:
        kid = ring.active(session, T0).kid
    token = forged({"alg": "none", "kid": kid, "typ": "JWT"}, claims_for(settings))
    assert "algorithm" in rejected(migrated, id_tokens, token)


def test_hs256_keyed_with_the_public_key(settings, migrated, ring, id_tokens) -> None:
    with migrated.sessions() as session:
        [jwk] = ring.jwks(session, GRACE, T0)["keys"]
    secret = json.dumps(jwk).encode()  # whatever form of the public key an attacker might try as an HMAC secret
    token = forged({"alg": "HS256", "kid": jwk["kid"], "typ": "JWT"}, claims_for(settings),
                   lambda data: hmac.new(secret, data, hashlib.sha256).digest())
    assert "algorithm" in rejected(migrated, id_tokens, token)


def test_unknown_kid(settings, migrated, id_tokens) -> None:
    stranger = KeyRing(Encryptor(os.urandom(32)), purpose="stranger")
    with migrated.transaction() as session:  # a key in the same database, but not one the broker publishes
        stranger.ensure(session, T0)
        token = stranger.active(session, T0).sign(claims_for(settings), typ="JWT")
    assert "key of this broker" in rejected(migrated, id_tokens, token)


def test_an_access_token_is_not_an_id_token(settings, migrated, ring, id_tokens) -> None:
    token = signed(migrated, ring, claims_for(settings), typ="at+jwt")
    assert "another kind" in rejected(migrated, id_tokens, token)


def test_foreign_issuer(settings, migrated, ring, id_tokens) -> None:
    token = signed(migrated, ring, claims_for(settings, iss="https://evil.example"))
    assert "issuer" in rejected(migrated, id_tokens, token)


def test_tampered_payload(settings, migrated, id_tokens) -> None:
    header, _, signature = issue(migrated, id_tokens).split(".")
    payload = b64(json.dumps(claims_for(settings, sub="someone-else")).encode())
    assert "signature" in rejected(migrated, id_tokens, f"{header}.{payload}.{signature}")


@pytest.mark.parametrize("garbage", ["", "not-a-jwt", "a.b.c", "...."])
def test_garbage(settings, migrated, id_tokens, garbage) -> None:
    with pytest.raises(IdTokenRejected):
        verify(migrated, id_tokens, garbage)

