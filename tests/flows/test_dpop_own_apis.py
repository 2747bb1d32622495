"""DPoP (RFC 9449 §7) at the broker's own protected resources, UserInfo and the admin API, on both stores: a
DPoP-bound token works only with the DPoP scheme and a proof for that request by its key, each proof once; a
bearer token works as before."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import ISSUER
from tests.support.dpop import DpopKey
from tests.support.oauth_flow import authorize, exchange, pkce, register_client

TOKEN_URL = f"{ISSUER}/token"
SERVERS = "/admin/api/v1/servers"


@dataclass
class Target:
    """A protected endpoint of the broker and a token for it, bound to ``key`` unless ``key`` is None."""

    path: str
    token: str
    key: DpopKey | None

    @property
    def url(self) -> str:
        return ISSUER + self.path

    def dpop(self, proof: str) -> dict[str, str]:
        return {"Authorization": f"DPoP {self.token}", "DPoP": proof}

    def good_proof(self) -> str:
        assert self.key is not None
        return self.key.proof("GET", self.url, access_token=self.token)


async def userinfo_token(client: httpx.AsyncClient, state: Any, key: DpopKey | None) -> str:
    app = register_client(state)
    verifier, challenge = pkce()
    redirect = await authorize(client, app.row.id, challenge, scope="openid email", resource=None)
    headers = {"DPoP": key.proof("POST", TOKEN_URL)} if key is not None else None
    response = await exchange(client, app.row.id, redirect["code"], verifier, resource=None, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def admin_token(client: httpx.AsyncClient, state: Any, key: DpopKey | None) -> str:
    robot = register_client(state, name="Automation", auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=("client_credentials",), scopes=("admin:read",))
    headers = {"DPoP": key.proof("POST", TOKEN_URL)} if key is not None else None
    response = await client.post("/token", data={"grant_type": "client_credentials", "resource": f"{ISSUER}/admin/api"},
                                 auth=(robot.row.id, robot.secret), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == ("DPoP" if key is not None else "Bearer")
    return str(response.json()["access_token"])


async def target(client: httpx.AsyncClient, state: Any, which: str, bound: bool) -> Target:
    key = DpopKey() if bound else None
    if which == "userinfo":
        return Target("/userinfo", await userinfo_token(client, state, key), key)
    return Target(SERVERS, await admin_token(client, state, key), key)


@pytest.fixture(params=["userinfo", "admin API"])
async def bound(request: pytest.FixtureRequest, client: httpx.AsyncClient, state: Any) -> Target:
    return await target(client, state, request.param, bound=True)


@pytest.fixture(params=["userinfo", "admin API"])
async def unbound(request: pytest.FixtureRequest, client: httpx.AsyncClient, state: Any) -> Target:
    return await target(client, state, request.param, bound=False)


def dpop_challenge(response: httpx.Response, error: str) -> str:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == error, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f'DPoP error="{error}"') and 'algs="' in challenge, challenge
    return challenge


async def test_a_dpop_bound_token_sent_as_bearer_is_refused(client: httpx.AsyncClient, bound: Target) -> None:
    response = await client.get(bound.path, headers={"Authorization": f"Bearer {bound.token}"})
    assert response.status_code == 401 and response.json()["error"] == "invalid_token", response.text
    challenges = response.headers.get_list("www-authenticate")
    assert challenges[0].startswith("Bearer ") and 'error="invalid_token"' in challenges[0]
    assert challenges[1].startswith('DPoP algs="'), challenges  # RFC 9449 §7.1: DPoP is accepted here


async def test_a_dpop_bound_token_with_a_proof_by_its_key_is_accepted(client: httpx.AsyncClient,
                                                                      bound: Target) -> None:
    response = await client.get(bound.path, headers=bound.dpop(bound.good_proof()))
    assert response.status_code == 200, response.text
    again = await client.get(bound.path, headers=bound.dpop(bound.good_proof()))  # a fresh proof each time
    assert again.status_code == 200, again.text


async def test_a_proof_is_good_for_one_request(client: httpx.AsyncClient, bound: Target) -> None:
    proof = bound.good_proof()
    assert (await client.get(bound.path, headers=bound.dpop(proof))).status_code == 200
    replayed = await client.get(bound.path, headers=bound.dpop(proof))
    assert "proof already used" in dpop_challenge(replayed, "invalid_dpop_proof")


async def test_a_proof_for_another_request_token_or_key_is_refused(client: httpx.AsyncClient, bound: Target) -> None:
    key, other = bound.key, DpopKey()
    assert key is not None
    proofs = [  # (what the refusal says, the proof)
        ("ath does not match the access token", key.proof("GET", bound.url, access_token=bound.token + "x")),
        ("ath does not match the access token", key.proof("GET", bound.url)),
        ("htu does not match the request URL", key.proof("GET", f"{ISSUER}/elsewhere", access_token=bound.token)),
        ("htu does not match the request URL",
         key.proof("GET", f"https://other.example{bound.path}", access_token=bound.token)),
        ("htm does not match the request method", key.proof("POST", bound.url, access_token=bound.token)),
        ("proof key is not the key the token is bound to", other.proof("GET", bound.url, access_token=bound.token)),
    ]
    for described, proof in proofs:
        response = await client.get(bound.path, headers=bound.dpop(proof))
        assert described in dpop_challenge(response, "invalid_dpop_proof")
    missing = await client.get(bound.path, headers={"Authorization": f"DPoP {bound.token}"})
    dpop_challenge(missing, "invalid_dpop_proof")
    assert (await client.get(bound.path, headers=bound.dpop(bound.good_proof()))).status_code == 200


async def test_a_bearer_token_still_works_as_bearer_and_not_with_the_dpop_scheme(client: httpx.AsyncClient,
                                                                                 unbound: Target) -> None:
    response = await client.get(unbound.path, headers={"Authorization": f"Bearer {unbound.token}"})
    assert response.status_code == 200, response.text
    key = DpopKey()
    proof = key.proof("GET", unbound.url, access_token=unbound.token)
    refused = await client.get(unbound.path, headers=unbound.dpop(proof))
    assert "not DPoP-bound" in dpop_challenge(refused, "invalid_token")


async def test_a_dpop_bound_token_without_the_scope_gets_a_dpop_insufficient_scope(client: httpx.AsyncClient,
                                                                                    state: Any) -> None:
    reader = await target(client, state, "admin API", bound=True)  # admin:read only
    assert reader.key is not None
    path = "/admin/api/v1/keys/rotate"
    proof = reader.key.proof("POST", ISSUER + path, access_token=reader.token)
    response = await client.post(path, headers=reader.dpop(proof))
    assert response.status_code == 403 and response.json()["error"] == "insufficient_scope", response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('DPoP error="insufficient_scope", scope="admin:write", algs="'), challenge
