"""DPoP and Enterprise-Managed Authorization: an ID-JAG carrying ``cnf.jkt`` is redeemed only with a proof by that
key (jwt-bearer in), an unsupported confirmation method is refused, and the ID-JAGs this broker issues are bound
to the key of the proof their token exchange came with (token exchange out)."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest

from broker.oauth import clients
from tests.flows.test_dpop_token import TOKEN_URL, refused
from tests.flows.test_id_jag_grant import sign_in
from tests.flows.test_token_exchange import AGENT, PARTNER, swap
from tests.flows.test_token_exchange import sign_in as oidc_sign_in
from tests.support.dpop import DpopKey
from tests.support.id_jag import JWT_BEARER, FakeIdp, grant_form, trusted_issuer
from tests.support.oauth_flow import DEMO_RESOURCE, register_client


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(id_jag={"audiences": [{"issuer": PARTNER, "resources": [DEMO_RESOURCE],
                                                "clients": {AGENT: "remote-agent"}}],
                                 "trusted_issuers": [trusted_issuer()]})


@pytest.fixture
def idp(loopback: Any) -> FakeIdp:
    return FakeIdp().install(loopback)


@pytest.fixture
def agent(state: Any) -> Any:
    sign_in(state, "alice", ("engineering",))
    return register_client(state, name="Agent", auth_method="client_secret_basic", redirect_uris=[],
                           grant_types=(JWT_BEARER,))


async def redeem(client: httpx.AsyncClient, agent: Any, assertion: str, proof: str | None = None) -> httpx.Response:
    return await client.post("/token", data=grant_form(assertion), auth=(agent.row.id, agent.secret),
                             headers={"DPoP": proof} if proof else None)


async def test_an_id_jag_bound_to_a_key_is_redeemed_only_with_a_proof_by_that_key(client, agent, idp) -> None:
    key = DpopKey()
    assertion = idp.assertion(agent.row.id, cnf={"jkt": key.jkt})
    refused(await redeem(client, agent, assertion), "invalid_grant")
    refused(await redeem(client, agent, assertion, DpopKey().proof("POST", TOKEN_URL)), "invalid_grant")
    good = await redeem(client, agent, assertion, key.proof("POST", TOKEN_URL))  # the refusals burnt nothing
    assert good.status_code == 200 and good.json()["token_type"] == "DPoP", good.text
    assert jwt.decode(good.json()["access_token"], options={"verify_signature": False})["cnf"] == {"jkt": key.jkt}


@pytest.mark.parametrize("cnf", [{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}, {"jwk": {"kty": "EC"}},
                                 {"jkt": 7}, "jkt", {"jkt": "abc", "x5t#S256": "def"}])
async def test_an_id_jag_with_a_confirmation_method_the_broker_cannot_check_is_refused(client, agent, idp,
                                                                                       cnf) -> None:
    key = DpopKey()
    refused(await redeem(client, agent, idp.assertion(agent.row.id, cnf=cnf), key.proof("POST", TOKEN_URL)),
            "invalid_grant")


async def test_an_unbound_id_jag_with_a_proof_gets_a_dpop_token(client, agent, idp) -> None:
    key = DpopKey()
    good = await redeem(client, agent, idp.assertion(agent.row.id), key.proof("POST", TOKEN_URL))
    assert good.status_code == 200 and good.json()["token_type"] == "DPoP", good.text


async def test_a_token_exchange_with_a_proof_issues_an_id_jag_bound_to_its_key(client, state) -> None:
    with state.database.transaction() as session:
        exchanger = clients.register(session, client_id=AGENT, name="Agent desktop", kind="preregistered",
                                     auth=clients.BASIC_AUTH, redirect_uris=["http://127.0.0.1:9999/cb"],
                                     grant_types=["authorization_code", "refresh_token",
                                                  "urn:ietf:params:oauth:grant-type:token-exchange"], trusted=True)
    tokens = await oidc_sign_in(client, exchanger)
    key = DpopKey()
    plain = await swap(client, exchanger, tokens["id_token"])
    assert "cnf" not in jwt.decode(plain.json()["access_token"], options={"verify_signature": False})
    client.headers["DPoP"] = key.proof("POST", TOKEN_URL)
    bound = await swap(client, exchanger, tokens["id_token"])
    del client.headers["DPoP"]
    assert bound.status_code == 200 and bound.json()["token_type"] == "N_A", bound.text
    assert jwt.decode(bound.json()["access_token"], options={"verify_signature": False})["cnf"] == {"jkt": key.jkt}
