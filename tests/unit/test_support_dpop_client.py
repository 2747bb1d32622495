"""tests/support/dpop_client.py's token_request against a fake token endpoint that wants a nonce (RFC 9449 §8)."""

from __future__ import annotations

import time

import httpx

from broker.resource.dpop import check_proof
from tests.support.dpop import DpopKey
from tests.support.dpop_client import token_request

BASE = "https://as.example"


class NonceDemandingTokenEndpoint:
    """Answers ``use_dpop_nonce`` with a ``DPoP-Nonce`` until a proof carries that nonce."""

    def __init__(self, nonce: str | None = "n-1"):
        self.nonce = nonce
        self.proofs: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        proof = check_proof(request.headers.get_list("dpop"), htm="POST", htu=f"{BASE}/token", now=time.time())
        self.proofs.append(proof.nonce)
        if self.nonce is not None and proof.nonce != self.nonce:
            return httpx.Response(400, json={"error": "use_dpop_nonce"}, headers={"DPoP-Nonce": self.nonce})
        return httpx.Response(200, json={"access_token": "t", "token_type": "DPoP"})


def test_token_request_retries_once_with_the_servers_nonce() -> None:
    endpoint = NonceDemandingTokenEndpoint()
    with httpx.Client(transport=httpx.MockTransport(endpoint)) as http:
        response = token_request(BASE, {"grant_type": "refresh_token"}, DpopKey(), http)
    assert response.status_code == 200 and endpoint.proofs == [None, "n-1"]


def test_token_request_gives_up_when_the_nonce_is_refused_again() -> None:
    endpoint = NonceDemandingTokenEndpoint()

    def always_another(request: httpx.Request) -> httpx.Response:
        endpoint.nonce = f"n-{len(endpoint.proofs) + 2}"  # a server that never accepts the nonce it gave
        return endpoint(request)

    with httpx.Client(transport=httpx.MockTransport(always_another)) as http:
        response = token_request(BASE, {"grant_type": "refresh_token"}, DpopKey(), http)
    assert response.status_code == 400 and len(endpoint.proofs) == 2


def test_token_request_without_a_nonce_demand_sends_one_proof() -> None:
    endpoint = NonceDemandingTokenEndpoint(nonce=None)
    with httpx.Client(transport=httpx.MockTransport(endpoint)) as http:
        assert token_request(BASE, {}, DpopKey(), http).status_code == 200
    assert endpoint.proofs == [None]
