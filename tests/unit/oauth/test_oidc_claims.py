"""Which OIDC scopes a request asked for, and how they are stored."""

from __future__ import annotations

import pytest

from broker.oauth import oidc_claims


@pytest.mark.parametrize("scope,expected", [
    ("openid", {"openid"}),
    ("email openid tools:read offline_access", {"openid", "email"}),
    ("openid profile email", {"openid", "profile", "email"}),
    ("profile email", set()),  # OIDC Core §3.1.2.1: without openid it is not an OpenID request
    ("", set()),
])
def test_requested_oidc_scopes(scope: str, expected: set[str]) -> None:
    assert oidc_claims.requested(scope.split(" ")) == expected


def test_stored_sorted_and_null_without_openid() -> None:
    assert oidc_claims.stored(frozenset({"openid", "email", "profile"})) == "email openid profile"
    assert oidc_claims.stored(frozenset()) is None
    assert oidc_claims.stored(frozenset({"email"})) is None
    assert oidc_claims.loaded("email openid") == {"email", "openid"}
    assert oidc_claims.loaded(None) == frozenset()
