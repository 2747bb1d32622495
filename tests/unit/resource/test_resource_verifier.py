"""BrokerTokenVerifier: every RFC 9068 §4 / RFC 8725 check, the JWKS cache and key rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from mcp.server.auth.provider import AccessToken

from broker.resource import BrokerAccessToken, BrokerTokenVerifier, VerifiedClaims

ISSUER = "http://127.0.0.1:8000"
RESOURCE = "http://127.0.0.1:8000/demo/mcp"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(signature)}"


# --- accepted tokens -------------------------------------------------------------------------------

async def test_valid_token_is_accepted_with_scopes_client_and_subject(broker: Any) -> None:
    token = broker.sign()
    access = await broker.verifier().verify_token(token)
    assert isinstance(access, BrokerAccessToken) and isinstance(access, AccessToken)
    assert access.token == token
    assert access.client_id == "client-1"
    assert access.scopes == ["tools:read", "tools:call"]
    assert access.subject == "alice"
    assert access.email == "alice@example.com"
    assert access.resource == RESOURCE
    assert access.expires_at == int(broker.clock()) + 300
    assert access.claims is not None and access.claims["iss"] == ISSUER


async def test_rs256_token_is_accepted(broker: Any) -> None:
    kid = broker.add_key("RS256")
    assert await broker.verifier().verify_token(broker.sign(kid)) is not None


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"])
async def test_typ_at_jwt_in_any_case_or_with_application_prefix_is_accepted(broker: Any, typ: str) -> None:
    assert await broker.verifier().verify_token(broker.sign(headers={"typ": typ})) is not None


async def test_aud_list_containing_our_resource_is_accepted(broker: Any) -> None:
    token = broker.sign(aud=["http://other.example/mcp", RESOURCE])
    access = await broker.verifier().verify_token(token)
    assert access is not None and access.resource == RESOURCE


async def test_client_credentials_token_without_email_is_accepted(broker: Any) -> None:
    access = await broker.verifier().verify_token(broker.sign(sub="client-1", email=None, auth_time=None))
    assert access is not None and access.subject == "client-1" and access.email is None


async def test_expiry_within_clock_skew_is_tolerated(broker: Any) -> None:
    token = broker.sign()
    broker.clock.advance(300 + 59)
    assert await broker.verifier().verify_token(token) is not None


# --- refused tokens ------------------------------------------------------------------------------

@pytest.mark.parametrize("claims", [
    {"aud": "http://127.0.0.1:8000/other/mcp"},  # minted for another server: never accept, never pass on
    {"aud": RESOURCE + "/"},  # compared exactly, as the broker wrote it
    {"aud": ["http://127.0.0.1:8000/other/mcp"]},
    {"aud": None},
    {"iss": ISSUER + "/"},  # byte for byte
    {"iss": "http://evil.example"},
    {"exp": int(1_800_000_000 - 61)},  # expired beyond the skew
    {"iat": int(1_800_000_000 + 61)},  # issued in the future beyond the skew
    {"nbf": int(1_800_000_000 + 61)},
    {"client_id": None},
    {"scope": None},
    {"sub": None},
    {"jti": None},
    {"exp": None},
    {"iat": None},
])
async def test_token_with_bad_claims_is_refused(broker: Any, claims: dict[str, Any]) -> None:
    assert await broker.verifier().verify_token(broker.sign(**claims)) is None


@pytest.mark.parametrize("typ", ["JWT", "jwt", None, "id_token+jwt", "at+jwt; x"])
async def test_typ_other_than_at_jwt_is_refused(broker: Any, typ: str | None) -> None:
    headers = {"typ": typ} if typ is not None else {}
    token = broker.sign(headers=headers)
    if typ is None:  # PyJWT adds typ JWT by default; build one with no typ at all
        header, payload, signature = token.split(".")
        decoded = json.loads(base64.urlsafe_b64decode(header + "=="))
        decoded.pop("typ", None)
        token = f"{b64(json.dumps(decoded).encode())}.{payload}.{signature}"
    assert await broker.verifier().verify_token(token) is None


async def test_alg_none_is_refused(broker: Any) -> None:
    token = compact({"alg": "none", "typ": "at+jwt", "kid": broker.kid}, broker.claims())
    assert await broker.verifier().verify_token(token) is None


@pytest.mark.parametrize("secret", ["pem", "jwk"])
async def test_hs256_signed_with_the_public_key_is_refused(broker: Any, secret: str) -> None:
    """The algorithm-confusion forgery (RFC 8725 §2.1): HMAC keyed with what the verifier trusts."""
    private_key, _ = broker.private[broker.kid]
    if secret == "pem":
        key = private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        key = json.dumps(broker.public_jwk(broker.kid)).encode()
    header = {"alg": "HS256", "typ": "at+jwt", "kid": broker.kid}
    unsigned = compact(header, broker.claims()).rsplit(".", 1)[0]
    token = unsigned + "." + b64(hmac.new(key, unsigned.encode(), hashlib.sha256).digest())
    assert await broker.verifier().verify_token(token) is None


async def test_header_alg_other_than_the_keys_is_refused(broker: Any) -> None:
    """An ES256 key named in a token that claims RS256 (signed with an RSA key of ours)."""
    rsa_kid = broker.add_key("RS256")
    token = broker.sign(rsa_kid, headers={"kid": broker.kid})
    assert await broker.verifier().verify_token(token) is None


async def test_algorithm_outside_the_configured_allow_list_is_refused(broker: Any) -> None:
    kid = broker.add_key("RS256")
    assert await broker.verifier(algorithms=("ES256",)).verify_token(broker.sign(kid)) is None


async def test_signature_by_another_key_under_a_known_kid_is_refused(broker: Any) -> None:
    impostor = broker.add_key("ES256", publish=False)
    token = broker.sign(impostor, headers={"kid": broker.kid})
    assert await broker.verifier().verify_token(token) is None


async def test_tampered_payload_is_refused(broker: Any) -> None:
    header, _, signature = broker.sign(scope="tools:read").split(".")
    payload = b64(json.dumps(broker.claims(scope="tools:read tools:call admin")).encode())
    assert await broker.verifier().verify_token(f"{header}.{payload}.{signature}") is None


async def test_missing_kid_is_refused(broker: Any) -> None:
    private_key, _ = broker.private[broker.kid]
    token = jwt.encode(broker.claims(), private_key, algorithm="ES256", headers={"typ": "at+jwt"})
    assert await broker.verifier().verify_token(token) is None


async def test_crit_header_is_refused(broker: Any) -> None:
    assert await broker.verifier().verify_token(broker.sign(headers={"crit": ["exp"], "exp": 1})) is None


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "a.b.c.d.e", "x" * 20_000])
async def test_malformed_tokens_are_refused(broker: Any, token: str) -> None:
    assert await broker.verifier().verify_token(token) is None


async def test_payload_that_is_not_an_object_is_refused(broker: Any) -> None:
    private_key, _ = broker.private[broker.kid]
    token = jwt.api_jws.encode(b"[1, 2]", private_key, algorithm="ES256",
                               headers={"typ": "at+jwt", "kid": broker.kid})
    assert await broker.verifier().verify_token(token) is None


@pytest.mark.parametrize("algorithms", [("HS256",), ("none",), ("ES256", "HS512"), ()])
def test_verifier_refuses_symmetric_or_none_algorithms(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        BrokerTokenVerifier(ISSUER, RESOURCE, algorithms=algorithms)


# --- JWKS: cache, unknown kid, rotation ----------------------------------------------------------

async def test_jwks_is_fetched_once_and_cached_across_calls(broker: Any) -> None:
    verifier = broker.verifier()
    for _ in range(3):
        assert await verifier.verify_token(broker.sign()) is not None
    assert broker.jwks_fetches == 1


async def test_jwks_default_location_is_issuer_jwks_and_can_be_overridden(broker: Any) -> None:
    assert broker.verifier().jwks.jwks_uri == f"{ISSUER}/jwks"
    assert broker.verifier(jwks_uri="https://keys.example/jwks").jwks.jwks_uri == "https://keys.example/jwks"


async def test_unknown_kid_refetches_once_then_refuses(broker: Any) -> None:
    verifier = broker.verifier()
    assert await verifier.verify_token(broker.sign()) is not None
    broker.clock.advance(31)
    stranger = broker.add_key("ES256", publish=False)
    assert await verifier.verify_token(broker.sign(stranger)) is None
    assert broker.jwks_fetches == 2
    # rate limit: a flood of unknown kids within the interval costs the broker nothing more
    for _ in range(5):
        assert await verifier.verify_token(broker.sign(stranger)) is None
    assert broker.jwks_fetches == 2
    broker.clock.advance(31)
    assert await verifier.verify_token(broker.sign(stranger)) is None
    assert broker.jwks_fetches == 3


async def test_rotated_key_is_accepted_after_refetch(broker: Any) -> None:
    verifier = broker.verifier()
    assert await verifier.verify_token(broker.sign()) is not None
    broker.clock.advance(31)  # the broker publishes the next key some time before it signs with it
    new_kid = broker.add_key("ES256")
    access = await verifier.verify_token(broker.sign(new_kid))
    assert access is not None
    assert broker.jwks_fetches == 2
    assert await verifier.verify_token(broker.sign()) is not None  # the old key still verifies
    assert broker.jwks_fetches == 2


async def test_new_kid_right_after_a_fetch_waits_for_the_rate_limit(broker: Any) -> None:
    verifier = broker.verifier()
    assert await verifier.verify_token(broker.sign()) is not None
    new_kid = broker.add_key("ES256")
    assert await verifier.verify_token(broker.sign(new_kid)) is None  # fetched < 30 s ago
    broker.clock.advance(30)
    assert await verifier.verify_token(broker.sign(new_kid)) is not None


async def test_stale_jwks_is_refreshed_and_retired_keys_drop_out(broker: Any) -> None:
    verifier = broker.verifier()
    old_kid = broker.kid
    assert await verifier.verify_token(broker.sign()) is not None
    new_kid = broker.add_key("ES256")
    broker.unpublish(old_kid)
    broker.clock.advance(300)
    assert await verifier.verify_token(broker.sign(old_kid)) is None
    assert await verifier.verify_token(broker.sign(new_kid)) is not None
    assert broker.jwks_fetches == 2


async def test_failed_jwks_fetch_keeps_known_keys_and_is_retried_later(broker: Any) -> None:
    verifier = broker.verifier()
    assert await verifier.verify_token(broker.sign()) is not None
    broker.jwks_status = 500
    broker.clock.advance(300)  # stale: refresh attempted, fails, old keys stay
    assert await verifier.verify_token(broker.sign()) is not None
    broker.jwks_status = 200
    new_kid = broker.add_key("ES256")
    assert await verifier.verify_token(broker.sign(new_kid)) is None  # retried only after the interval
    broker.clock.advance(30)
    assert await verifier.verify_token(broker.sign(new_kid)) is not None


async def test_broker_unreachable_at_start_refuses_tokens(broker: Any) -> None:
    broker.jwks_status = 503
    assert await broker.verifier().verify_token(broker.sign()) is None


# --- revocation seam, logging ---------------------------------------------------------------------

async def test_revocation_hook_sees_verified_claims_and_can_refuse(broker: Any) -> None:
    seen: list[VerifiedClaims] = []
    revoked_jti = "revoked-1"

    def is_revoked(claims: VerifiedClaims) -> bool:
        seen.append(claims)
        return claims.jwt_id == revoked_jti

    verifier = broker.verifier(is_revoked=is_revoked)
    assert await verifier.verify_token(broker.sign(jti="fine-1")) is not None
    assert await verifier.verify_token(broker.sign(jti=revoked_jti)) is None
    assert [c.jwt_id for c in seen] == ["fine-1", revoked_jti]
    assert seen[0].subject == "alice" and seen[0].audience == RESOURCE


async def test_revocation_hook_failure_refuses_the_token(broker: Any) -> None:
    def broken(claims: VerifiedClaims) -> bool:
        raise RuntimeError("feed down")

    assert await broker.verifier(is_revoked=broken).verify_token(broker.sign()) is None


async def test_rejections_log_reason_and_kid_but_never_the_token(broker: Any,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="broker.resource")
    verifier = broker.verifier()
    good = broker.sign()
    bad = broker.sign(aud="http://127.0.0.1:8000/other/mcp")
    assert await verifier.verify_token(good) is not None
    assert await verifier.verify_token(bad) is None
    assert "aud is not this resource" in caplog.text
    assert broker.kid in caplog.text
    for token in (good, bad):
        assert token not in caplog.text
        assert token.split(".")[2] not in caplog.text


async def test_verifier_closes_only_the_http_client_it_created(broker: Any) -> None:
    http = broker.http()
    verifier = broker.verifier(http=http)
    await verifier.verify_token(broker.sign())
    await verifier.aclose()
    assert not http.is_closed
    await http.aclose()
    own = BrokerTokenVerifier(ISSUER, RESOURCE)
    await own.aclose()  # nothing created yet: nothing to close


async def test_unreachable_jwks_host_refuses_tokens_without_raising(broker: Any) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(down))
    assert await broker.verifier(http=http).verify_token(broker.sign()) is None


async def test_concurrent_first_verifications_fetch_the_jwks_once(broker: Any) -> None:
    verifier = broker.verifier()
    results: list[Any] = []

    async def verify() -> None:
        results.append(await verifier.verify_token(broker.sign()))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(verify)
    assert len(results) == 10 and all(r is not None for r in results)
    assert broker.jwks_fetches == 1
