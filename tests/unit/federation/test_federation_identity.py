"""The Identity value, claim reading, errors, the broker's login secrets and building connectors."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from broker.config import IdpSettings
from broker.federation import (
    Identity,
    InvalidIdToken,
    LoginSecrets,
    OidcConnector,
    UpstreamRejected,
    UpstreamUnavailable,
    build_connectors,
    error_from_response,
)
from broker.federation.login import s256
from tests.unit.federation.fakes import DROP, REFRESH_TOKEN, FakeIdp, log_in


def make_identity(**changes: Any) -> Identity:
    fields: dict[str, Any] = {"idp_id": "acme", "subject": "00u-alice", "email": "alice@example.com",
                              "email_verified": True, "name": "Alice", "groups": ("engineering",),
                              "claims": {"sub": "00u-alice"}, "auth_time": None, "acr": None, "amr": (),
                              "upstream_refresh_token": REFRESH_TOKEN}
    return Identity(**{**fields, **changes})


def test_repr_hides_the_upstream_refresh_token() -> None:
    identity = make_identity()
    assert REFRESH_TOKEN not in repr(identity)
    assert REFRESH_TOKEN not in str(identity)
    assert "00u-alice" in repr(identity)


def test_identity_is_immutable_and_so_are_its_claims() -> None:
    claims = {"sub": "00u-alice"}
    identity = make_identity(claims=claims)
    claims["sub"] = "00u-mallory"
    assert identity.claims["sub"] == "00u-alice"
    with pytest.raises(TypeError):
        identity.claims["sub"] = "00u-mallory"  # type: ignore[index]
    with pytest.raises(AttributeError):
        identity.subject = "00u-mallory"  # type: ignore[misc]


async def test_identity_from_the_standard_claims(connector: OidcConnector, idp: FakeIdp) -> None:
    identity = await log_in(connector)
    assert identity.idp_id == "acme"
    assert identity.subject == "00u-alice"
    assert identity.email == "alice@example.com"
    assert identity.email_verified is True
    assert identity.name == "Alice Anders"
    assert identity.groups == ("engineering", "everyone")
    assert identity.amr == ("pwd", "mfa")
    assert identity.acr == "urn:okta:loa:2fa:any"
    assert identity.auth_time == int(idp.clock()) - 5
    assert identity.upstream_refresh_token == REFRESH_TOKEN


async def test_absent_optional_claims_read_as_none(connector: OidcConnector, idp: FakeIdp) -> None:
    for claim in ("email", "email_verified", "name", "groups", "amr", "acr", "auth_time"):
        idp.claim_changes[claim] = DROP
    idp.refresh_token = None
    identity = await log_in(connector)
    assert (identity.email, identity.email_verified, identity.name, identity.acr, identity.auth_time) == (
        None, None, None, None, None)
    assert (identity.groups, identity.amr, identity.upstream_refresh_token) == ((), (), None)


async def test_name_falls_back_to_preferred_username(connector: OidcConnector, idp: FakeIdp) -> None:
    idp.claim_changes |= {"name": DROP, "preferred_username": "alice@corp"}
    assert (await log_in(connector)).name == "alice@corp"


async def test_claims_of_the_wrong_type_read_as_absent(connector: OidcConnector, idp: FakeIdp) -> None:
    idp.claim_changes |= {"email": 5, "email_verified": "true", "name": ["A"], "acr": 2, "amr": "pwd",
                          "auth_time": "yesterday"}
    identity = await log_in(connector)
    assert (identity.email, identity.email_verified, identity.name, identity.acr, identity.auth_time) == (
        None, None, None, None, None)
    assert identity.amr == ()


@pytest.mark.parametrize("groups", ["engineering", {"engineering": True}, 7])
async def test_groups_that_are_not_a_list_are_ignored_with_a_warning(
        connector: OidcConnector, idp: FakeIdp, caplog: pytest.LogCaptureFixture, groups: Any) -> None:
    idp.claim_changes["groups"] = groups
    with caplog.at_level(logging.WARNING, logger="broker.federation"):
        identity = await log_in(connector)
    assert identity.groups == ()
    assert "groups claim is not a list" in caplog.text


async def test_group_entries_that_are_not_names_are_dropped(connector: OidcConnector, idp: FakeIdp,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    idp.claim_changes["groups"] = ["engineering", 3, None, "", {"x": 1}, "sales", "engineering"]
    with caplog.at_level(logging.WARNING, logger="broker.federation"):
        assert (await log_in(connector)).groups == ("engineering", "sales")
    assert "not names" in caplog.text


# ---------------------------------------------------------------- errors


def test_error_from_response_maps_codes() -> None:
    denied = error_from_response("access_denied", "The user said no")
    assert isinstance(denied, UpstreamRejected)
    assert (denied.upstream_error, denied.upstream_description, denied.client_error) == (
        "access_denied", "The user said no", "access_denied")
    for code in ("server_error", "temporarily_unavailable"):
        unavailable = error_from_response(code)
        assert isinstance(unavailable, UpstreamUnavailable)
        assert unavailable.client_error == "temporarily_unavailable"
    assert error_from_response(None).upstream_error == "invalid_response"
    assert error_from_response("x" * 65).upstream_error == "invalid_response"
    long = error_from_response("access_denied", "d" * 5000)
    assert isinstance(long, UpstreamRejected) and long.upstream_description == "d" * 200


# ---------------------------------------------------------------- login secrets


def test_login_secrets_are_fresh_and_the_verifier_stays_out_of_repr() -> None:
    first, second = LoginSecrets.new(), LoginSecrets.new()
    assert len({first.state, first.nonce, first.code_verifier, second.state, second.nonce}) == 5
    assert 43 <= len(first.code_verifier) <= 128  # RFC 7636 §4.1
    assert first.code_verifier not in repr(first)


def test_s256_matches_rfc_7636_appendix_b() -> None:
    assert s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


# ---------------------------------------------------------------- building connectors


async def test_build_connectors_uses_the_types_given_by_the_composition_root() -> None:
    idps = [IdpSettings(id="corp", type="oidc", issuer="https://idp.example.com", client_id="c",
                        client_secret="corp-client-secret"),
            IdpSettings(id="test", type="test", issuer="http://127.0.0.1:8000/testidp", client_id="c",
                        display_name="Test IdP")]
    async with httpx.AsyncClient() as http:
        connectors = build_connectors(idps, {"oidc": OidcConnector, "test": OidcConnector}, http=http,
                                      redirect_uri=lambda idp: f"https://broker.example.com/callback/{idp.id}")
        assert set(connectors) == {"corp", "test"}
        corp = connectors["corp"]
        assert isinstance(corp, OidcConnector)
        assert corp.redirect_uri == "https://broker.example.com/callback/corp"
        assert (corp.display_name, connectors["test"].display_name) == ("corp", "Test IdP")
        assert "corp-client-secret" not in repr(corp)
        with pytest.raises(ValueError, match="okta"):
            build_connectors([IdpSettings(id="o", type="okta", issuer="https://o.example.com", client_id="c")],
                             {"oidc": OidcConnector}, http=http, redirect_uri=lambda idp: "https://b/cb")


# ---------------------------------------------------------------- claims mapping from config


async def test_claim_names_come_from_config(idp: FakeIdp) -> None:
    idp.claim_changes |= {"employee_id": "E-1001", "mail": "alice@corp.example", "displayName": "Alice A.",
                          "roles": ["mcp-users"]}
    async with idp.client() as http:
        connector = idp.connector(http, claims={"subject": "employee_id", "email": "mail", "name": "displayName",
                                                "groups": "roles"})
        identity = await log_in(connector)
    assert (identity.subject, identity.email, identity.name, identity.groups) == (
        "E-1001", "alice@corp.example", "Alice A.", ("mcp-users",))
    assert identity.email_verified is None  # email_verified speaks for `email`, not for `mail`


async def test_unset_claim_names_keep_the_defaults(idp: FakeIdp) -> None:
    async with idp.client() as http:
        identity = await log_in(idp.connector(http, claims={"groups": "roles"}))
    assert (identity.subject, identity.email, identity.email_verified, identity.name) == (
        "00u-alice", "alice@example.com", True, "Alice Anders")
    assert identity.groups == ()  # no `roles` claim


@pytest.mark.parametrize("value", [None, "", 42, "x" * 256])
async def test_a_configured_subject_claim_must_be_usable(idp: FakeIdp, value: Any) -> None:
    idp.claim_changes["employee_id"] = DROP if value is None else value
    async with idp.client() as http:
        with pytest.raises(InvalidIdToken, match="employee_id"):
            await log_in(idp.connector(http, claims={"subject": "employee_id"}))


async def test_refresh_token_is_dropped_when_config_says_not_to_store_it(idp: FakeIdp) -> None:
    async with idp.client() as http:
        identity = await log_in(idp.connector(http, store_refresh_token=False))
    assert identity.upstream_refresh_token is None


@pytest.mark.parametrize("value", [2**64, -(2**64), 1e300, 253_402_300_800])
def test_a_numeric_date_no_datetime_holds_reads_as_absent(value: float) -> None:
    """An IdP's auth_time past year 9999 would crash the sign-in that stores it as a datetime."""
    from broker.federation.claims import timestamp

    assert timestamp({"auth_time": value}, "auth_time") is None
    assert timestamp({"auth_time": 1_700_000_000}, "auth_time") == 1_700_000_000
