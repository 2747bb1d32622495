"""Client ID Metadata Documents: the URL rules, the host lists, document verification, cache headers."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from broker.oauth.cimd import (
    CimdError,
    ClientMetadata,
    DocumentCache,
    InvalidDocument,
    check_client_id_url,
    check_host,
    freshness_lifetime,
    is_client_id_url,
    verify_document,
)
from broker.oauth.clients import _new_client_id
from tests.support.clock import FakeClock

URL = "https://app.example.com/oauth/client.json"
REDIRECT = "http://127.0.0.1:33418/callback"
PUBLIC_EC_KEY = {"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
                 "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}


def document(**overrides: object) -> bytes:
    doc: dict[str, object] = {"client_id": URL, "client_name": "Example Agent", "redirect_uris": [REDIRECT]}
    doc.update(overrides)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


# ---------------------------------------------------------------- URL rules


@pytest.mark.parametrize("url", [
    URL,
    "https://app.example.com/client",
    "https://app.example.com:8443/a/b/c.json",
    "https://127.0.0.1:9443/client.json",
    "https://[2001:db8::1]/client.json",
    "https://app.example.com/client.json?v=2",  # SHOULD NOT, but allowed
])
def test_acceptable_client_id_urls(url: str) -> None:
    assert is_client_id_url(url)
    assert check_client_id_url(url).scheme == "https"


@pytest.mark.parametrize("url,reason", [
    ("https://app.example.com", "must have a path"),
    ("https://app.example.com/", "must have a path"),
    ("https://app.example.com/client.json#frag", "fragment"),
    ("https://app.example.com/client.json#", "fragment"),
    ("https://user@app.example.com/client.json", "user information"),
    ("https://user:pw@app.example.com/client.json", "user information"),
    ("https://app.example.com/a/../client.json", "path segments"),
    ("https://app.example.com/./client.json", "path segments"),
    ("https://app.example.com/a/%2e%2E/client.json", "path segments"),
    ("https://app.example.com/a/%2e/client.json", "path segments"),
    ("https://app.example.com/..", "path segments"),
    ("https:///client.json", "must name a host"),
    ("https://app.example.com:99999/client.json", "not a valid URL"),
    ("https://app.example.com/client json", "printable ASCII"),
    ("https://app.example.com/client\\json", "backslashes"),
    ("https://app.exämple.com/client.json", "printable ASCII"),
    ("https://app.example.com/" + "a" * 2100, "longer than"),
])
def test_refused_client_id_urls(url: str, reason: str) -> None:
    with pytest.raises(CimdError, match=reason):
        check_client_id_url(url)


def test_http_and_other_ids_are_not_metadata_urls() -> None:
    assert not is_client_id_url("http://app.example.com/client.json")
    assert not is_client_id_url("mcp_abc")
    assert not is_client_id_url("HTTPS://app.example.com/client.json")  # not the URL a document could carry


def test_generated_client_ids_never_look_like_metadata_urls() -> None:
    assert not any(is_client_id_url(_new_client_id()) for _ in range(100))


# ---------------------------------------------------------------- host lists


@pytest.mark.parametrize("host,allowed,denied,ok", [
    ("app.example.com", [], [], True),
    ("app.example.com", ["app.example.com"], [], True),
    ("APP.example.com.", ["app.example.com"], [], True),
    ("app.example.com", ["*.example.com"], [], True),
    ("deep.app.example.com", ["*.example.com"], [], True),
    ("example.com", ["*.example.com"], [], False),  # *.suffix is subdomains only
    ("badexample.com", ["*.example.com"], [], False),
    ("other.org", ["*.example.com"], [], False),
    ("app.example.com", [], ["app.example.com"], False),
    ("app.example.com", ["*.example.com"], ["app.example.com"], False),  # denied wins
    ("evil.example.com", [], ["*.example.com"], False),
    ("127.0.0.1", ["127.0.0.1"], [], True),
    ("::1", ["[::1]"], [], True),
])
def test_host_lists(host: str, allowed: list[str], denied: list[str], ok: bool) -> None:
    if ok:
        check_host(host, allowed, denied)
    else:
        with pytest.raises(CimdError):
            check_host(host, allowed, denied)


# ---------------------------------------------------------------- the document


def test_a_minimal_document_is_a_public_code_client() -> None:
    metadata = verify_document(URL, document())
    assert metadata == ClientMetadata(client_id=URL, client_name="Example Agent", redirect_uris=(REDIRECT,),
                                      token_endpoint_auth_method="none", grant_types=("authorization_code",),
                                      jwks=None, descriptive={})


def test_refresh_private_key_jwt_and_descriptive_fields() -> None:
    metadata = verify_document(URL, document(
        grant_types=["authorization_code", "refresh_token"], response_types=["code"],
        token_endpoint_auth_method="private_key_jwt", jwks={"keys": [PUBLIC_EC_KEY]},
        client_uri="https://app.example.com/", logo_uri="https://app.example.com/logo.png", contacts=["a@b.c"],
        scope="anything", software_id=7))
    assert metadata.grant_types == ("authorization_code", "refresh_token")
    assert metadata.token_endpoint_auth_method == "private_key_jwt" and metadata.jwks == {"keys": [PUBLIC_EC_KEY]}
    assert metadata.descriptive == {"client_uri": "https://app.example.com/",
                                    "logo_uri": "https://app.example.com/logo.png", "contacts": ["a@b.c"]}
    assert metadata.row_values()["jwks_uri"] is None


@pytest.mark.parametrize("body,reason", [
    (document(client_id="https://app.example.com/oauth/other.json"), "client_id is not exactly"),
    (document(client_id="https://APP.example.com/oauth/client.json"), "client_id is not exactly"),  # no normalising
    (document(client_id=URL + "/"), "client_id is not exactly"),
    (document(client_id=None), "client_id is not exactly"),
    (document(client_secret="s3cret"), "contains client_secret"),
    (document(client_secret_expires_at=0), "contains client_secret_expires_at"),
    (document(token_endpoint_auth_method="client_secret_basic"), "shared secret"),
    (document(token_endpoint_auth_method="client_secret_post"), "shared secret"),
    (document(token_endpoint_auth_method="client_secret_jwt"), "shared secret"),
    (document(token_endpoint_auth_method="tls_client_auth"), "must be none or private_key_jwt"),
    (document(token_endpoint_auth_method="private_key_jwt"), "needs the client's public keys"),
    (document(token_endpoint_auth_method="private_key_jwt", jwks_uri="http://app.example.com/jwks"),
     "jwks_uri must be an https URL"),
    (document(token_endpoint_auth_method="private_key_jwt", jwks_uri="https://user@app.example.com/jwks"),
     "must not contain userinfo"),
    (document(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [PUBLIC_EC_KEY]},
              jwks_uri="https://app.example.com/jwks"), "must not both"),
    (document(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
     "only public"),
    (document(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [{**PUBLIC_EC_KEY, "d": "x"}]}),
     "private key material"),
    (document(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [{**PUBLIC_EC_KEY, "x": "bad"}]}),
     "not a valid JWK set"),
    (document(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [PUBLIC_EC_KEY]},
              token_endpoint_auth_signing_alg="HS256"), "token_endpoint_auth_signing_alg must be one of"),
    (document(token_endpoint_auth_signing_alg="ES256"), "applies to token_endpoint_auth_method private_key_jwt"),
    (document(client_name=None), "client_name is required"),
    (document(client_name="   "), "client_name is required"),
    (document(client_name=["x"]), "client_name is required"),
    (document(client_name="x" * 201), "longer than 200"),
    (document(client_name="Good\u202eevil"), "control or formatting"),
    (document(client_name="line\nbreak"), "control or formatting"),
    (document(redirect_uris=None), "redirect_uris must be"),
    (document(redirect_uris=[]), "redirect_uris must be"),
    (document(redirect_uris="http://127.0.0.1/cb"), "redirect_uris must be"),
    (document(redirect_uris=["http://evil.example.com/cb"]), "only on loopback"),
    (document(redirect_uris=["javascript:alert(1)"]), "redirect URI"),
    (document(redirect_uris=["https://app.example.com/cb#x"]), "fragment"),
    (document(grant_types=["client_credentials"]), "grant_types may contain only"),
    (document(grant_types=["authorization_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"]),
     "grant_types may contain only"),
    (document(grant_types=["refresh_token"]), "must include authorization_code"),
    (document(grant_types="authorization_code"), "list of strings"),
    (document(response_types=["code", "token"]), "response_types may contain only"),
    (b"[1, 2]", "not a JSON object"),
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    (f'{{"client_id": "{URL}", "client_id": "{URL}"}}'.encode(), "repeats a member"),
])
def test_refused_documents(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidDocument, match=reason):
        verify_document(URL, body)


# ---------------------------------------------------------------- cache headers (RFC 9111)

RECEIVED = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
DATE = "Sun, 01 Nov 2026 12:00:00 GMT"


@pytest.mark.parametrize("headers,cap,seconds", [
    ({}, 3600, 0),  # no explicit freshness: not reused
    ({"cache-control": "max-age=300"}, 3600, 300),
    ({"cache-control": "public, max-age=\"300\""}, 3600, 300),
    ({"cache-control": "Max-Age=300"}, 3600, 300),
    ({"cache-control": "max-age=86400"}, 3600, 3600),  # capped by cimd.max_cache_seconds
    ({"cache-control": "max-age=300"}, 0, 0),
    ({"cache-control": "max-age=300", "age": "100"}, 3600, 200),
    ({"cache-control": "max-age=300", "age": "900"}, 3600, 0),
    ({"cache-control": "max-age=300, no-store"}, 3600, 0),
    ({"cache-control": "no-cache, max-age=300"}, 3600, 0),
    ({"cache-control": "private, max-age=60"}, 3600, 60),
    ({"cache-control": "max-age=-5"}, 3600, 0),  # invalid: stale
    ({"cache-control": "max-age=abc"}, 3600, 0),
    ({"cache-control": "max-age=\u00b2"}, 3600, 0),  # a digit to str.isdigit, not to int()
    ({"cache-control": "max-age=60, max-age=600"}, 3600, 0),  # conflicting: stale
    ({"cache-control": "max-age=60", "expires": "Sun, 01 Nov 2026 13:00:00 GMT", "date": DATE}, 3600, 60),
    ({"expires": "Sun, 01 Nov 2026 12:10:00 GMT", "date": DATE}, 3600, 600),
    ({"expires": "Sun, 01 Nov 2026 12:10:00 GMT"}, 3600, 600),  # no Date: measured from receipt
    ({"expires": "Sun, 01 Nov 2026 11:00:00 GMT", "date": DATE}, 3600, 0),
    ({"expires": "0", "date": DATE}, 3600, 0),  # invalid dates mean "already expired"
    ({"expires": "Sun, 01 Nov 2026 14:00:00 GMT", "date": DATE}, 3600, 3600),
    ({"cache-control": "no-store", "expires": "Sun, 01 Nov 2026 12:10:00 GMT"}, 3600, 0),
])
def test_freshness_lifetime(headers: dict[str, str], cap: int, seconds: float) -> None:
    assert freshness_lifetime(headers, RECEIVED, cap) == seconds


def _metadata(name: str) -> ClientMetadata:
    return ClientMetadata(client_id=name, client_name=name, redirect_uris=(REDIRECT,),
                          token_endpoint_auth_method="none", grant_types=("authorization_code",), jwks=None)


def test_cache_entries_expire_and_zero_lifetimes_are_not_kept() -> None:
    clock = FakeClock(1000.0)
    cache = DocumentCache(clock=clock)
    cache.put("a", _metadata("a"), 60)
    cache.put("b", _metadata("b"), 0)
    assert cache.get("a") == _metadata("a") and cache.get("b") is None
    clock.now += 59.9
    assert cache.get("a") is not None
    clock.now += 0.1
    assert cache.get("a") is None and len(cache) == 0


def test_cache_is_bounded_least_recently_used_first() -> None:
    cache = DocumentCache(max_entries=3, clock=FakeClock(1000.0))
    for name in "abc":
        cache.put(name, _metadata(name), 60)
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("d", _metadata("d"), 60)
    assert [n for n in "abcd" if cache.get(n) is not None] == ["a", "c", "d"]
    assert len(cache) == 3


def test_a_new_put_with_no_lifetime_drops_the_old_entry() -> None:
    cache = DocumentCache(clock=FakeClock(1000.0))
    cache.put("a", _metadata("a"), 60)
    cache.put("a", _metadata("a"), 0)
    assert cache.get("a") is None
