"""Every ID token the connector must refuse (OIDC Core §3.1.3.7, RFC 8725), against a fake IdP."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from broker.federation import InvalidIdToken, OidcConnector
from tests.support.hostile import signed, wrong_claims
from tests.unit.federation.fakes import (
    CLIENT_ID,
    DROP,
    ISSUER,
    NONCE,
    FakeIdp,
    FakeSigningKey,
    b64url,
    compact,
    log_in,
)


async def refused(connector: OidcConnector, match: str) -> InvalidIdToken:
    with pytest.raises(InvalidIdToken, match=match) as rejected:
        await log_in(connector)
    assert rejected.value.client_error == "access_denied"
    return rejected.value


async def test_a_good_id_token_is_accepted(connector: OidcConnector) -> None:
    identity = await log_in(connector)
    assert identity.subject == "00u-alice"
    assert identity.claims["nonce"] == NONCE


# ---------------------------------------------------------------- claims


@pytest.mark.parametrize("aud", ["someone-else", ["someone-else"], [], 42, [CLIENT_ID, 7]])
async def test_audience_without_this_client_is_refused(idp: FakeIdp, connector: OidcConnector, aud: Any) -> None:
    idp.claim_changes["aud"] = aud
    await refused(connector, "audience")


async def test_missing_audience_is_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.claim_changes["aud"] = DROP
    await refused(connector, "audience")


async def test_several_audiences_without_azp_are_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.claim_changes["aud"] = [CLIENT_ID, "https://api.example.com"]
    await refused(connector, "several audiences")


async def test_several_audiences_with_this_client_as_azp_are_accepted(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.claim_changes |= {"aud": [CLIENT_ID, "https://api.example.com"], "azp": CLIENT_ID}
    assert (await log_in(connector)).subject == "00u-alice"


async def test_azp_of_another_client_is_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.claim_changes["azp"] = "someone-else"
    await refused(connector, "authorized party")


async def test_wrong_nonce_is_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.claim_changes["nonce"] = "nonce-of-another-login"
    await refused(connector, "nonce does not match")


@pytest.mark.parametrize("nonce", [DROP, None, 12345])
async def test_missing_nonce_is_refused(idp: FakeIdp, connector: OidcConnector, nonce: Any) -> None:
    idp.claim_changes["nonce"] = nonce
    await refused(connector, "no nonce")


@pytest.mark.parametrize("iss", [ISSUER + "/", "https://evil.example.com/oauth2/default", ISSUER.upper(), DROP])
async def test_issuer_other_than_the_configured_one_is_refused(idp: FakeIdp, connector: OidcConnector,
                                                               iss: Any) -> None:
    idp.claim_changes["iss"] = iss
    await refused(connector, "issuer")


async def test_expired_id_token_is_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.claim_changes |= {"iat": int(idp.clock()) - 400, "exp": int(idp.clock()) - 61}
    await refused(connector, "expired")


async def test_expiry_within_the_clock_skew_is_tolerated(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.claim_changes |= {"iat": int(idp.clock()) - 400, "exp": int(idp.clock()) - 30}
    assert (await log_in(connector)).subject == "00u-alice"


async def test_id_token_issued_in_the_future_is_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.claim_changes |= {"iat": int(idp.clock()) + 120, "exp": int(idp.clock()) + 420}
    await refused(connector, "issued in the future")


async def test_id_token_not_valid_yet_is_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.claim_changes["nbf"] = int(idp.clock()) + 120
    await refused(connector, "not valid yet")


@pytest.mark.parametrize("claim", ["exp", "iat"])
@pytest.mark.parametrize("value", [DROP, "1800000300", True, None])
async def test_times_must_be_numeric_dates(idp: FakeIdp, connector: OidcConnector, claim: str, value: Any) -> None:
    idp.claim_changes[claim] = value
    await refused(connector, f"{claim} is missing or not a NumericDate")


@pytest.mark.parametrize("sub", [DROP, "", "   ", None, 42, "x" * 256])
async def test_missing_or_bad_subject_is_refused(idp: FakeIdp, connector: OidcConnector, sub: Any) -> None:
    idp.claim_changes["sub"] = sub
    await refused(connector, "subject")


# ---------------------------------------------------------------- algorithms and signatures


async def test_alg_none_is_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.id_token = compact({"alg": "none", "typ": "JWT", "kid": idp.key.kid}, idp.claims())
    await refused(connector, "algorithm is not allowed")


async def test_alg_none_is_refused_even_when_the_idp_advertises_it(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.discovery["id_token_signing_alg_values_supported"] = ["none", "RS256"]
    idp.id_token = compact({"alg": "none", "kid": idp.key.kid}, idp.claims())
    await refused(connector, "algorithm is not allowed")


@pytest.mark.parametrize("advertised", [["RS256"], ["RS256", "HS256"]])
async def test_hs256_signed_with_the_public_key_is_refused(idp: FakeIdp, connector: OidcConnector,
                                                           advertised: list[str]) -> None:
    """Algorithm confusion (RFC 8725 §2.1): the published RSA key used as an HMAC secret."""
    idp.discovery["id_token_signing_alg_values_supported"] = advertised
    header = {"alg": "HS256", "typ": "JWT", "kid": idp.key.kid}
    for secret in (idp.key.public_pem(), idp.key.jwk["n"].encode()):
        idp.id_token = compact(header, idp.claims(), b"")
        signing_input = idp.id_token.rsplit(".", 1)[0]
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        idp.id_token = f"{signing_input}.{b64url(mac)}"
        await refused(connector, "algorithm is not allowed")


async def test_symmetric_keys_in_the_jwks_are_never_used(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.discovery["id_token_signing_alg_values_supported"] = ["HS256", "RS256"]
    idp.published = [{"kty": "oct", "kid": "shared", "k": b64url(b"x" * 32)}, idp.key.jwk]
    header = {"alg": "HS256", "kid": "shared"}
    signing_input = compact(header, idp.claims()).rsplit(".", 1)[0]
    idp.id_token = f"{signing_input}.{b64url(hmac.new(b'x' * 32, signing_input.encode(), hashlib.sha256).digest())}"
    await refused(connector, "algorithm is not allowed")


async def test_algorithm_the_idp_does_not_advertise_is_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.discovery["id_token_signing_alg_values_supported"] = ["ES256"]
    await refused(connector, "algorithm is not allowed")


@pytest.mark.parametrize("alg", ["RS256", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA"])
async def test_every_allowed_algorithm_verifies(idp: FakeIdp, connector: OidcConnector, alg: str) -> None:
    idp.key = FakeSigningKey(alg, kid=f"{alg}-key")
    idp.published = [idp.key.jwk]
    idp.discovery["id_token_signing_alg_values_supported"] = [alg]
    assert (await log_in(connector)).subject == "00u-alice"


async def test_signature_by_another_key_under_a_published_kid_is_refused(idp: FakeIdp,
                                                                          connector: OidcConnector) -> None:
    idp.signing_key = FakeSigningKey("RS256", kid=idp.key.kid)
    await refused(connector, "signature is invalid")


async def test_tampered_claims_are_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    header, _, signature = idp.key.sign(idp.claims()).split(".")
    forged_claims = compact({}, {**idp.claims(), "sub": "00u-admin"}).split(".")[1]
    idp.id_token = f"{header}.{forged_claims}.{signature}"
    await refused(connector, "signature is invalid")


async def test_key_type_that_does_not_fit_alg_is_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    ec_key = FakeSigningKey("ES256", kid=idp.key.kid)
    idp.published = [ec_key.jwk]  # the kid is published, but as an EC key
    await refused(connector, "does not fit")


async def test_key_bound_to_another_algorithm_is_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.published = [{**idp.key.jwk, "alg": "RS512"}]
    await refused(connector, "does not fit")


async def test_encryption_keys_are_not_signature_keys(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.published = [{**idp.key.jwk, "use": "enc"}]
    await refused(connector, "does not publish")


async def test_encrypted_id_token_is_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.id_token = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d"
    await refused(connector, "not a signed JWT")


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "!!!.???.###"])
async def test_garbage_id_token_is_refused(idp: FakeIdp, connector: OidcConnector, token: str) -> None:
    idp.token_body = {"access_token": "x", "token_type": "Bearer", "id_token": token}
    with pytest.raises(InvalidIdToken):
        await log_in(connector)


async def test_id_token_typed_as_an_access_token_is_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.header_changes["typ"] = "at+jwt"
    await refused(connector, "another kind of token")


async def test_critical_header_extensions_are_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    header = {"alg": "RS256", "kid": idp.key.kid, "crit": ["b64"], "b64": True}  # known to the library, not to us
    idp.id_token = compact(header, idp.claims(), b"signature")
    await refused(connector, "critical")
    idp.id_token = compact({**header, "crit": ["exp"], "exp": 1}, idp.claims(), b"signature")
    await refused(connector, "header is malformed")


async def test_without_kid_the_only_published_key_is_used(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.header_changes["kid"] = DROP
    assert (await log_in(connector)).subject == "00u-alice"


async def test_without_kid_and_several_keys_the_token_is_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.header_changes["kid"] = DROP
    idp.published = [idp.key.jwk, FakeSigningKey("RS256", kid="key-2").jwk]
    await refused(connector, "names no key")


async def test_unknown_kid_refetches_once_then_fails(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.signing_key = FakeSigningKey("RS256", kid="rogue")
    await refused(connector, "does not publish")
    assert idp.count("/v1/keys") == 2  # the first fetch and one refetch
    await refused(connector, "does not publish")
    assert idp.count("/v1/keys") == 2


async def test_id_token_missing_from_the_token_response_is_refused(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.token_body = {"access_token": "x", "token_type": "Bearer"}
    await refused(connector, "no ID token")


async def test_any_claim_of_the_wrong_type_is_refused_or_ignored_never_a_crash(idp: FakeIdp,
                                                                                connector: OidcConnector) -> None:
    """Signed by the IdP's own key, every claim of the ID token is read: a required one missing or of another JSON
    type is ``InvalidIdToken``; an optional one of another type is refused or ignored; no other exception."""
    problems, tried = [], 0
    for name, case, variant in wrong_claims(idp.claims()):
        idp.id_token = signed(variant, idp.key.private_key, idp.key.alg, {"kid": idp.key.kid, "typ": "JWT"})
        tried += 1
        try:
            await log_in(connector)
        except InvalidIdToken:
            continue
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
            problems.append(f"{name} {case}: {type(exc).__name__}: {str(exc)[:80]}")
            continue
        if name in ("iss", "sub", "aud", "exp", "iat", "nonce"):
            problems.append(f"{name} {case}: accepted")
    assert tried > 150 and not problems, "\n".join(problems)
