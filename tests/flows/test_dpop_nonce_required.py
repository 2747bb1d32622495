"""DPoP nonces (RFC 9449 §8) when a deployment requires them: a proof without one, or with an expired or foreign
one, gets ``use_dpop_nonce`` and a fresh ``DPoP-Nonce`` to retry with; nonces are stateless, so one made by any
instance holding the same key-encryption key is accepted."""

from __future__ import annotations

import time
from typing import Any

import pytest

from broker.oauth.dpop_nonces import DpopNonces, nonce_key
from tests.flows.test_dpop_token import TOKEN_URL, machine_client, machine_token, refused
from tests.support.dpop import DpopKey


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(dpop={"require_nonce": True, "nonce_lifetime": 120})


@pytest.fixture
def machine(state: Any) -> Any:
    return machine_client(state)


async def test_a_proof_without_a_nonce_gets_one_and_the_retry_with_it_passes(client, machine) -> None:
    key = DpopKey()
    first = await machine_token(client, machine, key.proof("POST", TOKEN_URL))
    refused(first, "use_dpop_nonce")
    assert first.headers["access-control-expose-headers"] == "DPoP-Nonce"  # a browser client may read it
    second = await machine_token(client, machine, key.proof("POST", TOKEN_URL, nonce=first.headers["dpop-nonce"]))
    assert second.status_code == 200 and second.json()["token_type"] == "DPoP", second.text
    assert second.headers["dpop-nonce"]  # the next one (§8.2)


async def test_an_expired_or_foreign_nonce_is_refused_with_a_fresh_one(client, machine, state) -> None:
    key, shared = DpopKey(), nonce_key(state.settings.key_encryption_key())
    expired = DpopNonces(shared, 120).issue(time.time() - 121)
    answer = await machine_token(client, machine, key.proof("POST", TOKEN_URL, nonce=expired))
    refused(answer, "use_dpop_nonce")
    assert answer.headers["dpop-nonce"] != expired
    foreign = DpopNonces(nonce_key(b"\x01" * 32), 120).issue(time.time())
    refused(await machine_token(client, machine, key.proof("POST", TOKEN_URL, nonce=foreign)), "use_dpop_nonce")
    another_instance = DpopNonces(shared, 120).issue(time.time())
    accepted = await machine_token(client, machine, key.proof("POST", TOKEN_URL, nonce=another_instance))
    assert accepted.status_code == 200, accepted.text


async def test_a_bearer_request_needs_no_nonce(client, machine) -> None:
    answer = await machine_token(client, machine)
    assert answer.status_code == 200 and answer.json()["token_type"] == "Bearer" and "dpop-nonce" not in answer.headers
