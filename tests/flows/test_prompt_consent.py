"""``prompt=consent`` (OIDC Core §3.1.2.1): the consent page is shown even when the user consented before, and
even to a trusted client, because the client asked for it; ``prompt=none`` stays alone."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.oauth_flow import authorize, exchange, pkce, register_client


async def consent_shown(client: httpx.AsyncClient, client_id: str, **params: str) -> bool:
    """Whether the trip stops at the consent page (it is then left unanswered)."""
    _, challenge = pkce()
    ended = await authorize(client, client_id, challenge, approve=None, **params)
    return ended["location"].startswith("/consent")


async def test_prompt_consent_asks_again_after_consent(client: httpx.AsyncClient, state: Any) -> None:
    app = register_client(state)
    verifier, challenge = pkce()
    first = await authorize(client, app.row.id, challenge)  # consents
    assert (await exchange(client, app.row.id, first["code"], verifier)).status_code == 200
    assert not await consent_shown(client, app.row.id)
    assert await consent_shown(client, app.row.id, prompt="consent")
    assert await consent_shown(client, app.row.id, prompt="login consent")
    verifier, challenge = pkce()
    approved = await authorize(client, app.row.id, challenge, prompt="consent")
    assert (await exchange(client, app.row.id, approved["code"], verifier)).status_code == 200


async def test_prompt_consent_is_shown_to_a_trusted_client_too(client: httpx.AsyncClient, state: Any) -> None:
    trusted = register_client(state, trusted=True)
    assert not await consent_shown(client, trusted.row.id)
    assert await consent_shown(client, trusted.row.id, prompt="consent")
    _, challenge = pkce()
    denied = await authorize(client, trusted.row.id, challenge, approve=False, prompt="consent")
    assert denied["error"] == "access_denied"


async def test_prompt_none_cannot_be_combined(client: httpx.AsyncClient, state: Any) -> None:
    app = register_client(state)
    _, challenge = pkce()
    refused = await authorize(client, app.row.id, challenge, prompt="none consent")
    assert refused["error"] == "invalid_request" and "prompt none" in refused["error_description"]
    alone = await authorize(client, app.row.id, challenge, prompt="none")
    assert alone["error"] == "login_required"
