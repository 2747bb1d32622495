"""DPoP (RFC 9449) at the token endpoint, through the whole app on both stores: every grant binds its access
token to the proof's key, a public client's refresh tokens and a ``dpop_jkt`` code are bound to it, and every
hostile proof is refused with its error and changes nothing (the grant it came with still works after)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt
import pytest
from jwt import api_jws as jws
from sqlalchemy import select

from broker.storage import mcp_servers
from broker.storage.models import AuditEvent, Client, RefreshTokenFamily, SeenJti
from tests.conftest import ISSUER
from tests.support.dpop import DpopKey
from tests.support.hostile import JUST_TOO_DEEP, nested, nested_objects, unsigned_jwt
from tests.support.oauth_flow import (
    DEMO_RESOURCE,
    allow_clients,
    authorize,
    exchange,
    pkce,
    refresh,
    register_client,
)

TOKEN_URL = f"{ISSUER}/token"


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def bound_tokens(client: httpx.AsyncClient, app_id: str, key: DpopKey) -> dict[str, Any]:
    verifier, challenge = pkce()
    redirect = await authorize(client, app_id, challenge)
    response = await exchange(client, app_id, redirect["code"], verifier,
                              headers={"DPoP": key.proof("POST", TOKEN_URL)})
    assert response.status_code == 200, response.text
    return response.json()


async def machine_token(client: httpx.AsyncClient, machine: Any, proof: str | None = None,
                        headers: list[tuple[str, str]] | None = None) -> httpx.Response:
    form = {"grant_type": "client_credentials", "resource": DEMO_RESOURCE}
    sent = headers if headers is not None else ([("DPoP", proof)] if proof is not None else [])
    return await client.post("/token", data=form, auth=(machine.row.id, machine.secret), headers=sent)


def machine_client(state: Any) -> Any:
    """A client-credentials client that policy lets reach the demo server."""
    agent = register_client(state, auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",), scopes=("tools:read",))
    allow_clients(state, agent.row.id)
    return agent


@pytest.fixture
def machine(state: Any) -> Any:
    return machine_client(state)


def refused(response: httpx.Response, error: str) -> None:
    assert response.status_code == 400 and response.json()["error"] == error, response.text


# ---------------------------------------------------------------- what each grant issues with a proof


async def test_a_code_redeemed_with_a_proof_gets_a_dpop_token_and_a_key_bound_refresh_token(client, state) -> None:
    app, key = register_client(state), DpopKey()
    tokens = await bound_tokens(client, app.row.id, key)
    assert tokens["token_type"] == "DPoP"
    assert claims_of(tokens["access_token"])["cnf"] == {"jkt": key.jkt}
    with state.database.sessions() as session:
        assert session.scalar(select(RefreshTokenFamily.dpop_jkt)) == key.jkt  # a public client: bound (§5)
    again = await refresh(client, app.row.id, tokens["refresh_token"], headers={"DPoP": key.proof("POST", TOKEN_URL)})
    assert again.status_code == 200 and again.json()["token_type"] == "DPoP", again.text
    assert claims_of(again.json()["access_token"])["cnf"] == {"jkt": key.jkt}
    with state.database.sessions() as session:  # the audit trail says which tokens were bound, to which key
        events = session.scalars(select(AuditEvent).where(AuditEvent.event_type.in_(("token.issued",
                                                                                       "token.refreshed"))))
        assert [event.data.get("dpop_jkt") for event in events] == [key.jkt, key.jkt]


async def test_without_a_proof_tokens_stay_bearer_and_unbound(client, state) -> None:
    app = register_client(state)
    verifier, challenge = pkce()
    redirect = await authorize(client, app.row.id, challenge)
    tokens = (await exchange(client, app.row.id, redirect["code"], verifier)).json()
    assert tokens["token_type"] == "Bearer" and "cnf" not in claims_of(tokens["access_token"])
    with state.database.sessions() as session:
        assert session.scalar(select(RefreshTokenFamily.dpop_jkt)) is None


async def test_client_credentials_with_a_proof_gets_a_dpop_token(client, machine) -> None:
    key = DpopKey("EdDSA")
    response = await machine_token(client, machine, key.proof("POST", TOKEN_URL))
    assert response.status_code == 200 and response.json()["token_type"] == "DPoP", response.text
    assert claims_of(response.json()["access_token"])["cnf"] == {"jkt": key.jkt}


async def test_introspection_returns_the_bound_key(client, state) -> None:
    app, key = register_client(state), DpopKey()
    server = register_client(state, auth_method="client_secret_basic", redirect_uris=[], grant_types=(),
                             may_introspect=True)
    token = (await bound_tokens(client, app.row.id, key))["access_token"]
    answer = (await client.post("/introspect", data={"token": token}, auth=(server.row.id, server.secret))).json()
    assert answer["active"] is True and answer["cnf"] == {"jkt": key.jkt} and answer["token_type"] == "DPoP"


# ---------------------------------------------------------------- bindings: refresh tokens and codes


async def test_a_bound_refresh_token_is_refused_with_another_key_or_none_and_still_works_after(client, state) -> None:
    app, key = register_client(state), DpopKey()
    tokens = await bound_tokens(client, app.row.id, key)
    other = await refresh(client, app.row.id, tokens["refresh_token"],
                          headers={"DPoP": DpopKey().proof("POST", TOKEN_URL)})
    refused(other, "invalid_grant")
    refused(await refresh(client, app.row.id, tokens["refresh_token"]), "invalid_grant")
    good = await refresh(client, app.row.id, tokens["refresh_token"], headers={"DPoP": key.proof("POST", TOKEN_URL)})
    assert good.status_code == 200, good.text


async def test_a_public_clients_first_proof_at_refresh_binds_its_refresh_tokens_from_then_on(client, state) -> None:
    app, key = register_client(state), DpopKey()
    verifier, challenge = pkce()
    redirect = await authorize(client, app.row.id, challenge)
    tokens = (await exchange(client, app.row.id, redirect["code"], verifier)).json()  # bearer: unbound
    first = await refresh(client, app.row.id, tokens["refresh_token"], headers={"DPoP": key.proof("POST", TOKEN_URL)})
    assert first.status_code == 200 and first.json()["token_type"] == "DPoP", first.text
    rotated = first.json()["refresh_token"]
    refused(await refresh(client, app.row.id, rotated), "invalid_grant")
    refused(await refresh(client, app.row.id, rotated, headers={"DPoP": DpopKey().proof("POST", TOKEN_URL)}),
            "invalid_grant")
    good = await refresh(client, app.row.id, rotated, headers={"DPoP": key.proof("POST", TOKEN_URL)})
    assert good.status_code == 200, good.text


async def test_a_confidential_clients_refresh_token_is_not_bound_to_the_key(client, state) -> None:
    app, key = register_client(state, auth_method="client_secret_basic"), DpopKey()
    verifier, challenge = pkce()
    redirect = await authorize(client, app.row.id, challenge)
    tokens = (await exchange(client, app.row.id, redirect["code"], verifier, secret=app.secret,
                             headers={"DPoP": key.proof("POST", TOKEN_URL)})).json()
    assert tokens["token_type"] == "DPoP"
    plain = await refresh(client, app.row.id, tokens["refresh_token"], secret=app.secret)
    assert plain.status_code == 200 and plain.json()["token_type"] == "Bearer", plain.text


async def test_a_code_bound_by_dpop_jkt_is_redeemed_only_with_that_key_and_survives_other_attempts(client,
                                                                                                 state) -> None:
    app, key = register_client(state), DpopKey()
    verifier, challenge = pkce()
    redirect = await authorize(client, app.row.id, challenge, dpop_jkt=key.jkt)
    code = redirect["code"]
    refused(await exchange(client, app.row.id, code, verifier, headers={"DPoP": DpopKey().proof("POST", TOKEN_URL)}),
            "invalid_grant")
    refused(await exchange(client, app.row.id, code, verifier), "invalid_grant")
    good = await exchange(client, app.row.id, code, verifier, headers={"DPoP": key.proof("POST", TOKEN_URL)})
    assert good.status_code == 200 and good.json()["token_type"] == "DPoP", good.text


async def test_a_malformed_dpop_jkt_is_refused_at_authorize(client, state) -> None:
    app = register_client(state)
    _, challenge = pkce()
    redirect = await authorize(client, app.row.id, challenge, dpop_jkt="not a thumbprint")
    assert redirect["error"] == "invalid_request" and "code" not in redirect


# ---------------------------------------------------------------- hostile proofs: refused, nothing changed


def hostile_proofs() -> dict[str, Any]:
    now = time.time()
    return {
        "another URL": lambda key: key.proof("POST", f"{ISSUER}/introspect"),
        "another method": lambda key: key.proof("GET", TOKEN_URL),
        "stale iat": lambda key: key.proof("POST", TOKEN_URL, iat=now - 600),
        "future iat": lambda key: key.proof("POST", TOKEN_URL, iat=now + 600),
        "private key in jwk": lambda key: key.proof("POST", TOKEN_URL, include_private=True),
        "alg none": lambda key: key.proof("POST", TOKEN_URL, alg="none"),
        "HS256": lambda key: key.proof("POST", TOKEN_URL, alg="HS256"),
        "wrong typ": lambda key: key.proof("POST", TOKEN_URL, typ="jwt"),
        "signed by another key": lambda key: key.proof("POST", TOKEN_URL, signed_by=DpopKey()),
        "not a JWT": lambda key: "not-a-jwt",
        "header nested too deep": lambda key: unsigned_jwt(nested(JUST_TOO_DEEP), "{}"),
        "claims nested too deep, signed": lambda key: jws.encode(nested_objects(JUST_TOO_DEEP).encode(),
                                                                 key.private_key, algorithm="ES256",
                                                                 headers={"typ": "dpop+jwt", "jwk": key.public_jwk}),
    }


@pytest.mark.parametrize("case", list(hostile_proofs()))
async def test_a_hostile_proof_is_refused_and_the_refresh_token_still_works(client, state, case) -> None:
    app, key = register_client(state), DpopKey()
    tokens = await bound_tokens(client, app.row.id, key)
    hostile = hostile_proofs()[case](key)
    refused(await refresh(client, app.row.id, tokens["refresh_token"], headers={"DPoP": hostile}),
            "invalid_dpop_proof")
    good = await refresh(client, app.row.id, tokens["refresh_token"], headers={"DPoP": key.proof("POST", TOKEN_URL)})
    assert good.status_code == 200, good.text


async def test_a_replayed_proof_is_refused(client, machine) -> None:
    proof = DpopKey().proof("POST", TOKEN_URL)
    assert (await machine_token(client, machine, proof)).status_code == 200
    refused(await machine_token(client, machine, proof), "invalid_dpop_proof")


async def test_two_dpop_headers_are_refused(client, machine) -> None:
    key = DpopKey()
    both = [("DPoP", key.proof("POST", TOKEN_URL)), ("DPoP", key.proof("POST", TOKEN_URL))]
    refused(await machine_token(client, machine, headers=both), "invalid_dpop_proof")


async def test_a_replayed_proof_leaves_the_refresh_token_usable(client, state) -> None:
    app, key = register_client(state), DpopKey()
    tokens = await bound_tokens(client, app.row.id, key)
    proof = key.proof("POST", TOKEN_URL)
    first = await refresh(client, app.row.id, tokens["refresh_token"], headers={"DPoP": proof})
    assert first.status_code == 200
    refused(await refresh(client, app.row.id, first.json()["refresh_token"], headers={"DPoP": proof}),
            "invalid_dpop_proof")
    good = await refresh(client, app.row.id, first.json()["refresh_token"],
                         headers={"DPoP": key.proof("POST", TOKEN_URL)})
    assert good.status_code == 200, good.text


async def test_one_proof_fifty_times_at_once_passes_once(client, machine, state) -> None:
    proof = DpopKey().proof("POST", TOKEN_URL)
    responses = await asyncio.gather(*(machine_token(client, machine, proof) for _ in range(50)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 1, statuses
    assert {r.json()["error"] for r in responses if r.status_code != 200} == {"invalid_dpop_proof"}
    with state.database.sessions() as session:
        assert len(session.scalars(select(SeenJti).where(SeenJti.purpose == "dpop-proof")).all()) == 1


# ---------------------------------------------------------------- who must use DPoP


async def test_a_client_registered_for_dpop_bound_tokens_gets_none_without_a_proof(client, state, machine) -> None:
    with state.database.transaction() as session:
        session.get(Client, machine.row.id).dpop_bound_access_tokens = True
    refused(await machine_token(client, machine), "invalid_grant")
    assert (await machine_token(client, machine, DpopKey().proof("POST", TOKEN_URL))).status_code == 200


async def test_a_server_requiring_dpop_gets_no_bearer_token_and_the_code_survives(client, state) -> None:
    with state.database.transaction() as session:
        demo = mcp_servers.get(session, "demo")
        mcp_servers.save(session, demo._replace(require_dpop=True))
    app, key = register_client(state), DpopKey()
    verifier, challenge = pkce()
    code = (await authorize(client, app.row.id, challenge))["code"]
    refused(await exchange(client, app.row.id, code, verifier), "invalid_grant")
    good = await exchange(client, app.row.id, code, verifier, headers={"DPoP": key.proof("POST", TOKEN_URL)})
    assert good.status_code == 200 and good.json()["token_type"] == "DPoP", good.text
