"""broker.resource.dpop: every RFC 9449 §4.3 check on hostile proofs, and the RFC 7638 thumbprint."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from broker.resource.dpop import (
    DPOP_ALGORITHMS,
    INVALID_DPOP_PROOF,
    DpopError,
    DpopProof,
    access_token_hash,
    check_proof,
    jwk_thumbprint,
    normalise_htu,
)
from tests.support.dpop import DpopKey

NOW = 1_800_000_000
URL = "https://mcp.example.com/demo/mcp"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


@pytest.fixture(scope="module")
def key() -> DpopKey:
    return DpopKey()


def check(proof: str | list[str], **kwargs: Any) -> DpopProof:
    kwargs.setdefault("htm", "POST")
    kwargs.setdefault("htu", URL)
    kwargs.setdefault("now", NOW)
    return check_proof([proof] if isinstance(proof, str) else proof, **kwargs)


def refused(proof: str | list[str], **kwargs: Any) -> str:
    with pytest.raises(DpopError) as caught:
        check(proof, **kwargs)
    assert caught.value.error == INVALID_DPOP_PROOF
    return caught.value.description


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- accepted proofs -----------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "EdDSA", "RS256", "PS256"])
def test_proof_of_each_asymmetric_algorithm_is_accepted_with_its_thumbprint(alg: str) -> None:
    client = DpopKey(alg)
    proof = check(client.proof("POST", URL, iat=NOW, jti="j-1", nonce="n-1"))
    assert proof == DpopProof(jkt=client.jkt, jti="j-1", iat=NOW, nonce="n-1", htm="POST", htu=URL,
                              jwk=client.public_jwk)


def test_proof_with_matching_ath_is_accepted_at_a_resource(key: DpopKey) -> None:
    proof = key.proof("GET", URL, iat=NOW, access_token=TOKEN)
    assert check(proof, htm="GET", access_token=TOKEN).jkt == key.jkt


def test_proof_without_nonce_returns_none_for_the_caller(key: DpopKey) -> None:
    assert check(key.proof("POST", URL, iat=NOW)).nonce is None


@pytest.mark.parametrize("htu", [
    "HTTPS://MCP.Example.COM/demo/mcp",  # scheme and host are case-insensitive
    "https://mcp.example.com:443/demo/mcp",  # the default port
    "https://mcp.example.com/demo/mcp?x=1#f",  # query and fragment are ignored
    "https://mcp.example.com/demo/./x/../mcp",  # dot segments
    "https://mcp.example.com/%64emo/mcp",  # an unreserved character percent-encoded
])
def test_htu_equal_after_normalisation_is_accepted(key: DpopKey, htu: str) -> None:
    assert check(key.proof("POST", htu, iat=NOW)).htu == htu


def test_request_url_with_a_query_matches_a_proof_without_one(key: DpopKey) -> None:
    check(key.proof("GET", URL, iat=NOW), htm="GET", htu=URL + "?cursor=2")


@pytest.mark.parametrize("offset", [-300, 300])
def test_iat_at_the_edges_of_the_window_is_accepted(key: DpopKey, offset: int) -> None:
    check(key.proof("POST", URL, iat=NOW + offset))


# --- the header values ---------------------------------------------------------------------------

def test_no_dpop_header_is_refused() -> None:
    assert refused([]) == "no DPoP header"


def test_two_dpop_headers_are_refused(key: DpopKey) -> None:
    proof = key.proof("POST", URL, iat=NOW)
    assert refused([proof, proof]) == "more than one DPoP header"


@pytest.mark.parametrize("value", ["", "not a jwt", "a.b", "a.b.c.d.e", "a,b.c.d", "é.b.c"])
def test_header_that_is_not_one_compact_jws_is_refused(value: str) -> None:
    assert refused(value) == "DPoP header is not one compact JWS"


def test_two_proofs_folded_into_one_header_are_refused(key: DpopKey) -> None:
    proof = key.proof("POST", URL, iat=NOW)
    assert refused(f"{proof}, {proof}") == "DPoP header is not one compact JWS"


def test_oversized_proof_is_refused(key: DpopKey) -> None:
    assert refused(key.proof("POST", URL, iat=NOW, extra_claims={"pad": "x" * 9000})) == "DPoP proof too long"


@pytest.mark.parametrize("header", ["bm90IGpzb24", b64(b"[1]"), b64(b'{"typ": "dpop+jwt"')])
def test_header_that_is_not_a_json_object_is_refused(header: str) -> None:
    assert refused(f"{header}.{b64(b'{}')}.{b64(b'sig')}") == "malformed DPoP proof"


def test_payload_that_is_not_a_json_object_is_refused(key: DpopKey) -> None:
    signed = key.proof("POST", URL, iat=NOW).split(".")
    assert refused(f"{signed[0]}.{b64(b'[1, 2]')}.{signed[2]}") in ("malformed DPoP proof", "bad DPoP proof signature")


# --- the JOSE header -----------------------------------------------------------------------------

@pytest.mark.parametrize("typ", ["JWT", "at+jwt", "DPoP+JWT", "application/dpop+jwt", None])
def test_typ_other_than_dpop_jwt_is_refused(key: DpopKey, typ: str | None) -> None:
    assert refused(key.proof("POST", URL, iat=NOW, typ=typ)) == "typ is not dpop+jwt"  # type: ignore[arg-type]


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512"])
def test_alg_none_or_symmetric_is_refused(key: DpopKey, alg: str) -> None:
    assert refused(key.proof("POST", URL, iat=NOW, alg=alg)) == "alg not allowed"


def test_alg_outside_the_callers_list_is_refused() -> None:
    client = DpopKey("RS256")
    assert refused(client.proof("POST", URL, iat=NOW), algorithms={"ES256"}) == "alg not allowed"


def test_crit_header_is_refused(key: DpopKey) -> None:
    proof = key.proof("POST", URL, iat=NOW, extra_header={"crit": ["exp"], "exp": 1})
    assert refused(proof) == "crit header not supported"


def test_missing_jwk_is_refused(key: DpopKey) -> None:
    assert refused(key.proof("POST", URL, iat=NOW, extra_header={"jwk": None})) == "jwk missing"


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_jwk_with_private_key_members_is_refused(alg: str) -> None:
    proof = DpopKey(alg).proof("POST", URL, iat=NOW, include_private=True)
    assert refused(proof) == "jwk contains private key material"


def test_symmetric_jwk_is_refused(key: DpopKey) -> None:
    proof = key.proof("POST", URL, iat=NOW, extra_header={"jwk": {"kty": "oct", "k": b64(b"secret")}})
    assert refused(proof) == "jwk contains private key material"


def test_jwk_of_another_curve_than_alg_is_refused() -> None:
    p384 = DpopKey("ES384")
    proof = DpopKey("ES256").proof("POST", URL, iat=NOW, extra_header={"jwk": p384.public_jwk})
    assert refused(proof) == "jwk does not fit alg"


def test_rsa_jwk_with_ec_alg_is_refused() -> None:
    proof = DpopKey("ES256").proof("POST", URL, iat=NOW, extra_header={"jwk": DpopKey("RS256").public_jwk})
    assert refused(proof) == "jwk does not fit alg"


def test_jwk_that_is_not_a_point_on_the_curve_is_refused(key: DpopKey) -> None:
    broken = {**key.public_jwk, "x": b64(b"\x01" * 32), "y": b64(b"\x02" * 32)}
    assert refused(key.proof("POST", URL, iat=NOW, extra_header={"jwk": broken})) == "jwk is not a usable public key"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_rsa_key_under_2048_bits_is_refused() -> None:
    proof = DpopKey("RS256", rsa_bits=1024).proof("POST", URL, iat=NOW)
    assert refused(proof) == "RSA key shorter than 2048 bits"


# --- the signature -------------------------------------------------------------------------------

def test_proof_signed_by_another_key_than_its_jwk_is_refused(key: DpopKey) -> None:
    assert refused(key.proof("POST", URL, iat=NOW, signed_by=DpopKey())) == "bad DPoP proof signature"


def test_proof_with_altered_claims_is_refused(key: DpopKey) -> None:
    header, _, signature = key.proof("POST", URL, iat=NOW).split(".")
    claims = {"jti": "x", "htm": "POST", "htu": URL, "iat": NOW}
    assert refused(f"{header}.{b64(json.dumps(claims).encode())}.{signature}") == "bad DPoP proof signature"


# --- the claims ----------------------------------------------------------------------------------

@pytest.mark.parametrize("claim", ["jti", "iat"])
def test_missing_jti_or_iat_is_refused(key: DpopKey, claim: str) -> None:
    assert refused(key.proof("POST", URL, iat=NOW, omit=(claim,))) in ("jti missing or too long",
                                                                        "iat missing or not a number")


@pytest.mark.parametrize("jti", ["", "x" * 257])
def test_empty_or_overlong_jti_is_refused(key: DpopKey, jti: str) -> None:
    proof = key.proof("POST", URL, iat=NOW, extra_claims={"jti": jti})
    assert refused(proof) == "jti missing or too long"


@pytest.mark.parametrize("iat", ["1800000000", True, None, float("inf")])
def test_iat_that_is_not_a_finite_number_is_refused(key: DpopKey, iat: Any) -> None:
    proof = key.proof("POST", URL, iat=NOW, extra_claims={"iat": iat})
    assert refused(proof) == "iat missing or not a number"


@pytest.mark.parametrize("offset", [-301, 301, -86_400, 86_400])
def test_stale_or_future_iat_is_refused(key: DpopKey, offset: int) -> None:
    assert refused(key.proof("POST", URL, iat=NOW + offset)) == "iat is outside the accepted window"


def test_iat_window_is_the_callers(key: DpopKey) -> None:
    proof = key.proof("POST", URL, iat=NOW - 20)
    assert refused(proof, iat_window=10) == "iat is outside the accepted window"
    check(proof, iat_window=30)


@pytest.mark.parametrize("htm", ["GET", "post", "PUT", None])
def test_proof_for_another_method_is_refused(key: DpopKey, htm: str | None) -> None:
    proof = key.proof("POST", URL, iat=NOW, extra_claims={"htm": htm})
    assert refused(proof) == "htm does not match the request method"


@pytest.mark.parametrize("htu", [
    "https://mcp.example.com/demo/other",  # another path
    "https://mcp.example.com/demo/mcp/",  # a trailing slash is another resource
    "http://mcp.example.com/demo/mcp",  # another scheme
    "https://mcp.example.com:8443/demo/mcp",  # another port
    "https://evil.example.com/demo/mcp",  # another host
    "https://mcp.example.com/Demo/mcp",  # paths are case-sensitive
    "/demo/mcp",  # not absolute
    "https://user@mcp.example.com/demo/mcp",  # userinfo makes it another URI
])
def test_proof_for_another_url_is_refused(key: DpopKey, htu: str) -> None:
    assert refused(key.proof("POST", htu, iat=NOW)) == "htu does not match the request URL"


@pytest.mark.parametrize("htu", [None, 42, ["https://mcp.example.com/demo/mcp"], "https://mcp.example.com:99999/"])
def test_htu_that_is_not_a_url_is_refused(key: DpopKey, htu: Any) -> None:
    proof = key.proof("POST", URL, iat=NOW, extra_claims={"htu": htu})
    assert refused(proof) == "htu does not match the request URL"


def test_nonce_that_is_not_a_string_is_refused(key: DpopKey) -> None:
    proof = key.proof("POST", URL, iat=NOW, extra_claims={"nonce": 7})
    assert refused(proof) == "nonce is not a string"


# --- ath -----------------------------------------------------------------------------------------

def test_missing_ath_with_an_access_token_is_refused(key: DpopKey) -> None:
    assert refused(key.proof("GET", URL, iat=NOW), htm="GET", access_token=TOKEN) == \
        "ath does not match the access token"


def test_ath_of_another_token_is_refused(key: DpopKey) -> None:
    proof = key.proof("GET", URL, iat=NOW, access_token=TOKEN + "x")
    assert refused(proof, htm="GET", access_token=TOKEN) == "ath does not match the access token"


def test_ath_with_padding_is_refused(key: DpopKey) -> None:
    proof = key.proof("GET", URL, iat=NOW, ath=access_token_hash(TOKEN) + "=")
    assert refused(proof, htm="GET", access_token=TOKEN) == "ath does not match the access token"


def test_ath_is_ignored_without_an_access_token(key: DpopKey) -> None:
    check(key.proof("POST", URL, iat=NOW, ath="anything"))


def test_ath_is_base64url_sha256_of_the_token() -> None:
    # RFC 9449 §7.1's example: the token "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU" and its ath.
    assert access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU") == \
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


# --- the error -----------------------------------------------------------------------------------

def test_error_carries_code_and_description_but_never_the_proof(key: DpopKey) -> None:
    proof = key.proof("POST", URL, iat=NOW, signed_by=DpopKey())
    with pytest.raises(DpopError) as caught:
        check(proof)
    assert (caught.value.error, caught.value.description) == (INVALID_DPOP_PROOF, "bad DPoP proof signature")
    assert proof not in str(caught.value) and proof.split(".")[1] not in str(caught.value)


# --- thumbprints (RFC 7638 §3.1, RFC 8037 Appendix A.3) -----------------------------------------

RFC7638_N = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWK"
             "RXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMi"
             "cAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRw"
             "r3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")


def test_thumbprint_of_the_rfc_7638_rsa_example() -> None:
    jwk = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_of_the_rfc_8037_ed25519_example() -> None:
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert jwk_thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_thumbprint_of_an_ec_key_agrees_with_joserfc(key: DpopKey) -> None:
    from joserfc.jwk import ECKey
    assert jwk_thumbprint(key.public_jwk) == ECKey.import_key(key.public_jwk).thumbprint()


def test_thumbprint_ignores_optional_members(key: DpopKey) -> None:
    assert jwk_thumbprint({**key.public_jwk, "kid": "k", "use": "sig"}) == key.jkt


@pytest.mark.parametrize("jwk", [{}, {"kty": "oct", "k": "c2VjcmV0"}, {"kty": "EC", "crv": "P-256", "x": "a"}])
def test_thumbprint_of_an_incomplete_or_symmetric_key_is_refused(jwk: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        jwk_thumbprint(jwk)


# --- helpers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("url,normal", [
    ("HTTPS://A.example:443", "https://a.example/"),
    ("http://a.example:80/x?y#z", "http://a.example/x"),
    ("http://a.example:8080/a/%7e/%2f", "http://a.example:8080/a/~/%2F"),
    ("http://[::1]:9000/mcp", "http://[::1]:9000/mcp"),
    ("http://a.example/a/b/..", "http://a.example/a/"),
    ("http://a.example/\u00e9 x", "http://a.example/%C3%A9%20x"),  # what a URL parser sends for these
    ("http://a.example/%c3%a9%20x", "http://a.example/%C3%A9%20x"),
])
def test_normalise_htu(url: str, normal: str) -> None:
    assert normalise_htu(url) == normal


@pytest.mark.parametrize("url", ["ftp://a.example/", "/relative", "https://"])
def test_normalise_htu_refuses_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(ValueError):
        normalise_htu(url)


def test_dpop_algorithms_are_asymmetric_only() -> None:
    assert not {"none", "HS256", "HS384", "HS512"} & DPOP_ALGORITHMS


def test_json_nested_past_the_recursion_limit_is_a_malformed_proof(key: DpopKey) -> None:
    import jwt

    nested_header = b64(b'{"typ":' + b"[" * 3000 + b"]" * 3000 + b"}")
    assert refused(f"{nested_header}.{b64(b'{}')}.{b64(b'sig')}") == "malformed DPoP proof"
    # a payload signed by the proof's own key: the signature holds, the claims cannot be read
    nested_claims = ("[" * 1500 + "]" * 1500).encode()
    header = {"typ": "dpop+jwt", "jwk": key.public_jwk}
    proof = jwt.api_jws.encode(nested_claims, key.private_key, algorithm="ES256", headers=header)
    assert refused(proof) == "malformed DPoP proof"
