"""Redirect URI registration and matching (exact, loopback port excepted)."""

from __future__ import annotations

import pytest

from broker.oauth import redirects

REGISTERED = ["https://app.example.com/cb", "http://127.0.0.1:9999/callback", "com.example.app:/oauth"]


@pytest.mark.parametrize("requested,ok", [
    ("https://app.example.com/cb", True),
    ("https://app.example.com/cb/", False),
    ("https://app.example.com/cb?x=1", False),
    ("https://APP.example.com/cb", False),
    ("https://app.example.com:443/cb", False),
    ("http://app.example.com/cb", False),
    ("http://127.0.0.1:9999/callback", True),
    ("http://127.0.0.1:1/callback", True),            # RFC 8252 §7.3: any port on loopback
    ("http://127.0.0.1/callback", True),
    ("http://127.0.0.1:9999/callback2", False),
    ("http://127.0.0.2:9999/callback", False),
    ("http://localhost:9999/callback", False),       # another host, even if it resolves to loopback
    ("https://127.0.0.1:9999/callback", False),
    ("http://127.0.0.1:99999/callback", False),       # not a port
    ("com.example.app:/oauth", True),
    ("com.example.app:/oauth2", False),
    ("", False),
])
def test_matching(requested: str, ok: bool) -> None:
    assert redirects.matches(REGISTERED, requested) is ok


@pytest.mark.parametrize("uri", ["https://app.example.com/cb", "http://127.0.0.1:3000/cb", "http://[::1]/cb",
                                 "http://localhost:8080/callback", "cursor://anysphere.cursor-retrieval/oauth",
                                 "com.example.app:/oauth"])
def test_registrable(uri: str) -> None:
    redirects.validate_for_registration(uri)


@pytest.mark.parametrize("uri", ["http://app.example.com/cb", "https://app.example.com/cb#frag", "javascript:alert(1)",
                                 "data:text/html,x", "https://user:pw@app.example.com/cb", "https:///cb", "",
                                 "https://app.example.com/c b", "https://äpp.example.com/cb", "file:///etc/passwd",
                                 "http://127.0.0.1:99999/cb"])
def test_not_registrable(uri: str) -> None:
    with pytest.raises(redirects.InvalidRedirectUri):
        redirects.validate_for_registration(uri)
