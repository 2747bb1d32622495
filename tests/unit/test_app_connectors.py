"""The composition root sorts the IdP connectors by what each can do (``broker.federation.base``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from broker import app, config
from broker.app import StartupError, idp_connectors
from broker.federation.identity import Identity
from tests.conftest import ISSUER, base_settings

TYPES = {"oidc": "https://oidc.example.com", "okta": "https://acme.okta.com", "test": f"{ISSUER}/testidp",
         "entra": "https://login.microsoftonline.com/0e0e0e0e-0000-4000-8000-000000000000/v2.0"}


def settings_with(*idps: dict[str, Any]) -> config.Settings:
    return config.load(None, env={}, defaults=base_settings(idps=list(idps)))


def idp(idp_type: str, **more: Any) -> dict[str, Any]:
    return {"id": f"{idp_type}-idp", "type": idp_type, "issuer": TYPES[idp_type], "client_id": "broker",
            "client_secret": "secret", **more}


class SignInOnly:
    """A connector with no capability beyond signing users in."""

    def __init__(self, settings: Any, *, redirect_uri: str, http: httpx.AsyncClient, clock_skew: int = 60):
        self.idp_id = settings.id
        self.display_name = settings.id

    async def authorization_url(self, *, state: str, nonce: str, code_challenge: str,
                                login_hint: str | None = None) -> str:
        return "https://idp.example.com/authorize"

    async def complete(self, *, code: str, code_verifier: str, nonce: str) -> Identity:
        raise NotImplementedError

    async def check_response_issuer(self, iss: str | None) -> None:
        return None

    def returning_to(self, redirect_uri: str) -> SignInOnly:
        return self


async def test_every_registered_type_signs_in_refreshes_and_revokes() -> None:
    async with httpx.AsyncClient() as http:
        capable = idp_connectors(settings_with(*(idp(t) for t in sorted(TYPES))), http)
    ids = {f"{t}-idp" for t in TYPES}
    assert set(capable.connectors) == set(capable.refreshing) == set(capable.revoking) == ids


async def test_a_connector_without_a_capability_is_not_offered_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.CONNECTOR_TYPES, "oidc", SignInOnly)
    async with httpx.AsyncClient() as http:
        capable = idp_connectors(settings_with(idp("oidc"), idp("okta")), http)
    assert set(capable.connectors) == {"oidc-idp", "okta-idp"}
    assert set(capable.refreshing) == set(capable.revoking) == {"okta-idp"}


async def test_the_upstream_check_needs_a_connector_that_refreshes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.CONNECTOR_TYPES, "oidc", SignInOnly)
    async with httpx.AsyncClient() as http:
        with pytest.raises(StartupError, match="'oidc-idp' sets check_upstream_on_refresh, but a 'oidc' IdP cannot"):
            idp_connectors(settings_with(idp("oidc", check_upstream_on_refresh=True)), http)


async def test_the_console_twin_returns_to_its_own_callback_and_shares_the_caches() -> None:
    async with httpx.AsyncClient() as http:
        connector = idp_connectors(settings_with(idp("okta")), http).connectors["okta-idp"]
    twin = connector.returning_to(f"{ISSUER}/admin/callback/okta-idp")
    assert type(twin) is type(connector)
    assert (twin.redirect_uri, connector.redirect_uri) == (f"{ISSUER}/admin/callback/okta-idp",
                                                          f"{ISSUER}/callback/okta-idp")
    assert twin._metadata is connector._metadata
