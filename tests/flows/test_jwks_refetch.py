"""A signer that re-keys under the same ``kid`` is believed at once: ID-JAG issuers and SSF senders.

The broker caches their JWKS (10 minutes). A signature that fails with the cached key for a known
``kid`` fetches the set again, at most once per 30 s per signer, so forged tokens naming a known
``kid`` cannot make the broker hammer the signer. (Upstream IdPs: tests/unit/federation/test_federation_jwks.py.)
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import ISSUER, TEST_USERS, TESTIDP_CLIENT
from tests.flows.test_id_jag_grant import redeem, sign_in
from tests.support.id_jag import FakeIdp, trusted_issuer
from tests.support.oauth_flow import DEMO_RESOURCE, register_client

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TRANSMITTER = "https://transmitter.example"
ACCOUNT_DISABLED = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"


class FakeTransmitter:
    """An SSF transmitter whose one key (kid ``t1``) a test can replace; counts JWKS fetches."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.fetches = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        return httpx.Response(200, json={"keys": [{**jwk, "kid": "t1", "alg": "ES256", "use": "sig"}]})

    def event(self, email: str, key: Any = None) -> str:
        claims = {"iss": TRANSMITTER, "aud": ISSUER, "iat": int(time.time()), "jti": str(uuid.uuid4()),
                  "sub_id": {"format": "email", "email": email}, "events": {ACCOUNT_DISABLED: {}}}
        return jwt.encode(claims, key or self.key, algorithm="ES256", headers={"kid": "t1", "typ": "secevent+jwt"})


@pytest.fixture
def transmitter(loopback: Any) -> FakeTransmitter:
    fake = FakeTransmitter()
    loopback.others["transmitter.example"] = fake.handler
    return fake


@pytest.fixture
def settings(make_settings: Any) -> Any:
    sender = {"id": "corp-ssf", "issuer": TRANSMITTER, "jwks_uri": f"{TRANSMITTER}/jwks", "algorithms": ["ES256"]}
    return make_settings(id_jag={"trusted_issuers": [trusted_issuer()]}, signals={"ssf_transmitters": [sender]},
                         testidp={"enabled": True, "users": TEST_USERS, "clients": [TESTIDP_CLIENT]})


async def test_an_id_jag_issuer_re_keyed_under_the_same_kid(client: httpx.AsyncClient, state: Any,
                                                            loopback: Any) -> None:
    idp = FakeIdp().install(loopback)
    sign_in(state, "alice", ("engineering",))
    agent = register_client(state, name="Agent", auth_method="client_secret_basic", redirect_uris=[],
                            grant_types=(JWT_BEARER,))
    assert (await redeem(client, agent, idp.assertion(agent.row.id))).status_code == 200
    idp.ec_key = ec.generate_private_key(ec.SECP256R1())  # published as "ec-1" from now on
    accepted = await redeem(client, agent, idp.assertion(agent.row.id), resource=DEMO_RESOURCE)
    assert accepted.status_code == 200, accepted.text
    assert idp.served == 2  # one refetch
    forger = FakeIdp()  # signs with keys of its own under the same kid
    for _ in range(5):
        refused = await redeem(client, agent, forger.assertion(agent.row.id))
        assert refused.json() == {"error": "invalid_grant",
                                  "error_description": "the assertion's signature does not verify"}
    assert idp.served == 2  # within 30 s of the last refetch: none


async def test_an_ssf_transmitter_re_keyed_under_the_same_kid(client: httpx.AsyncClient, state: Any,
                                                              transmitter: FakeTransmitter) -> None:
    def push(token: str) -> Any:
        return client.post("/ssf/events", content=token, headers={"content-type": "application/secevent+jwt"})

    assert (await push(transmitter.event("nobody@example.com"))).status_code == 202
    transmitter.key = ec.generate_private_key(ec.SECP256R1())
    assert (await push(transmitter.event("nobody@example.com"))).status_code == 202
    assert transmitter.fetches == 2
    for _ in range(5):
        forged = await push(transmitter.event("alice@example.com", key=ec.generate_private_key(ec.SECP256R1())))
        assert forged.status_code == 400 and forged.json()["err"] == "invalid_key"
    assert transmitter.fetches == 2
