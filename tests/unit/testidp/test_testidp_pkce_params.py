"""PKCE (RFC 7636) and strict parameter parsing of the test IdP, without HTTP."""

from __future__ import annotations

import pytest

from broker.testidp import pkce
from broker.testidp.errors import InvalidGrant, InvalidRequest
from broker.testidp.params import ProviderParams

# RFC 7636 Appendix B
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_s256_matches_the_rfc_7636_example() -> None:
    assert pkce.s256(VERIFIER) == CHALLENGE


def test_verify_accepts_the_matching_verifier() -> None:
    pkce.verify(VERIFIER, CHALLENGE)


@pytest.mark.parametrize("verifier", [
    VERIFIER[:-1] + "Y",  # well formed, does not match
    "short",  # RFC 7636 §4.1: at least 43 characters
    "a" * 129,  # at most 128
    VERIFIER[:-1] + "!",  # outside the unreserved set
])
def test_verify_rejects_wrong_or_malformed_verifiers(verifier: str) -> None:
    with pytest.raises(InvalidGrant):
        pkce.verify(verifier, CHALLENGE)


def test_verify_requires_a_verifier_when_the_code_has_a_challenge() -> None:
    with pytest.raises(InvalidRequest):
        pkce.verify(None, CHALLENGE)


@pytest.mark.parametrize("challenge,method", [
    (None, None),  # PKCE is required
    (CHALLENGE, None),  # absent method means plain
    (CHALLENGE, "plain"),
    ("not-a-challenge", "S256"),
])
def test_authorization_requests_need_an_s256_challenge(challenge: str | None, method: str | None) -> None:
    with pytest.raises(InvalidRequest):
        pkce.check_challenge(challenge, method)


def test_repeated_parameters_are_refused_when_read() -> None:
    params = ProviderParams.from_query(b"a=1&b=2&b=3")
    assert params.get("a") == "1"
    with pytest.raises(InvalidRequest, match="'b' is repeated"):
        params.get("b")
    with pytest.raises(InvalidRequest):
        params.reject_duplicates()


def test_empty_parameters_count_as_absent() -> None:
    params = ProviderParams.from_query(b"state=&scope=openid")
    assert params.get("state") is None
    with pytest.raises(InvalidRequest):
        params.require("state")


@pytest.mark.parametrize("raw", [b"state=%FF", b"state=\xff"])
def test_non_utf8_queries_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        ProviderParams.from_query(raw)


def test_forms_must_be_urlencoded_utf8() -> None:
    assert ProviderParams.from_form(b"a=%C3%A9", "application/x-www-form-urlencoded; charset=UTF-8").get("a") == "é"
    with pytest.raises(InvalidRequest):
        ProviderParams.from_form(b'{"a": 1}', "application/json")
    with pytest.raises(InvalidRequest):
        ProviderParams.from_form(b"a=%FF", "application/x-www-form-urlencoded")


def test_too_many_or_too_long_parameters_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        ProviderParams.from_query("&".join(f"p{i}=1" for i in range(100)).encode())
    with pytest.raises(InvalidRequest):
        ProviderParams.from_query(b"state=" + b"x" * 5000)
