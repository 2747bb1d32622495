"""Reading a compact JWS before verification: strict base64url, JSON objects, nothing else."""

from __future__ import annotations

import base64
import json

import pytest

from broker.oauth import jws


def segment(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def test_header_and_claims_are_read() -> None:
    token = f"{segment({'alg': 'ES256', 'kid': 'k'})}.{segment({'sub': 'é'})}.c2ln"
    assert jws.unverified_parts(token) == ({"alg": "ES256", "kid": "k"}, {"sub": "é"})
    assert jws.unverified_header(token) == {"alg": "ES256", "kid": "k"}


@pytest.mark.parametrize("token", [
    "", "a.b", "a.b.c.d", f"{segment({'alg': 'x'})}=.{segment({})}.s",  # padding is not base64url
    f"{segment({'alg': 'x'})}\n.{segment({})}.s", f"!!!!.{segment({})}.s", f"{segment({'alg': 'x'})}.a.s",
    f"{base64.urlsafe_b64encode(b'{not json').decode().rstrip('=')}.{segment({})}.s",
    f"{base64.urlsafe_b64encode(bytes([0xff, 0xfe])).decode().rstrip('=')}.{segment({})}.s", ".e30.s",
])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(jws.MalformedJws):
        jws.unverified_parts(token)


@pytest.mark.parametrize("header, claims", [([1], {}), ({}, "text"), (None, {})])
def test_json_that_is_not_an_object_is_refused(header: object, claims: object) -> None:
    with pytest.raises(jws.NotJsonObjects):
        jws.unverified_parts(f"{segment(header)}.{segment(claims)}.s")


def test_not_a_string_is_refused() -> None:
    with pytest.raises(jws.MalformedJws):
        jws.unverified_header(b"a.b.c")  # type: ignore[arg-type]
