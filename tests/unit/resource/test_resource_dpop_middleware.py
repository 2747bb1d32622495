"""DpopAuthMiddleware in the demo MCP server, in-process: both schemes, DPoP challenges, require_dpop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.support.dpop import DpopKey
from tests.unit.resource.test_protected_server import CALL_WHOAMI, INITIALIZE, ISSUER, MCP_HEADERS, challenge, example

URL = f"{ISSUER}/demo/mcp"
ALGS = "ES256 ES384 ES512 EdDSA PS256 PS384 PS512 RS256 RS384 RS512"


@asynccontextmanager
async def demo_app(broker: Any, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = example.create_app(ISSUER, URL, verifier=broker.verifier(**options))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http:
            yield http


@pytest.fixture
async def demo(broker: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with demo_app(broker) as http:
        yield http


@pytest.fixture(scope="module")
def key() -> DpopKey:
    return DpopKey()


def dpop_headers(broker: Any, key: DpopKey, token: str, **proof: Any) -> dict[str, str]:
    proof.setdefault("iat", broker.clock())
    return {**MCP_HEADERS, "authorization": f"DPoP {token}",
            "dpop": key.proof(proof.pop("htm", "POST"), proof.pop("htu", URL), access_token=token, **proof)}


async def initialize(demo: httpx.AsyncClient, headers: Callable[[], dict[str, str]]) -> dict[str, str]:
    response = await demo.post("/demo/mcp", json=INITIALIZE, headers=headers())
    assert response.status_code == 200, response.text
    return {"mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}


async def test_dpop_bound_token_with_proofs_calls_whoami(broker: Any, demo: httpx.AsyncClient, key: DpopKey) -> None:
    token = broker.sign(cnf={"jkt": key.jkt})
    session = await initialize(demo, lambda: dpop_headers(broker, key, token))
    response = await demo.post("/demo/mcp", json=CALL_WHOAMI, headers={**dpop_headers(broker, key, token), **session})
    assert response.status_code == 200 and '"sub":"alice"' in response.text.replace(" ", "")


async def test_bearer_token_still_calls_whoami_beside_dpop(broker: Any, demo: httpx.AsyncClient) -> None:
    token = broker.sign()
    headers = {**MCP_HEADERS, "authorization": f"Bearer {token}"}
    session = await initialize(demo, lambda: headers)
    response = await demo.post("/demo/mcp", json=CALL_WHOAMI, headers={**headers, **session})
    assert response.status_code == 200 and "alice" in response.text


async def test_no_token_gets_both_challenges(demo: httpx.AsyncClient) -> None:
    response = await demo.post("/demo/mcp", json=INITIALIZE, headers=MCP_HEADERS)
    assert response.status_code == 401
    assert challenge(response)["scope"] == "tools:read tools:call"
    assert challenge(response, "DPoP") == {"algs": ALGS}


async def test_bound_token_as_bearer_gets_401_invalid_token(broker: Any, demo: httpx.AsyncClient,
                                                            key: DpopKey) -> None:
    token = broker.sign(cnf={"jkt": key.jkt})
    headers = {**MCP_HEADERS, "authorization": f"Bearer {token}"}
    response = await demo.post("/demo/mcp", json=INITIALIZE, headers=headers)
    assert response.status_code == 401
    assert challenge(response)["error"] == "invalid_token"
    assert "algs" in challenge(response, "DPoP")


async def test_proof_by_another_key_gets_a_dpop_challenge(broker: Any, demo: httpx.AsyncClient, key: DpopKey) -> None:
    token = broker.sign(cnf={"jkt": key.jkt})
    response = await demo.post("/demo/mcp", json=INITIALIZE, headers=dpop_headers(broker, DpopKey(), token))
    assert response.status_code == 401
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {"error": "invalid_dpop_proof",
                               "error_description": "proof key is not the key the token is bound to"}
    params = challenge(response, "DPoP")
    assert params["error"] == "invalid_dpop_proof" and params["algs"] == ALGS
    assert params["resource_metadata"] == f"{ISSUER}/.well-known/oauth-protected-resource/demo/mcp"
    assert response.headers.get_list("www-authenticate") == [response.headers["www-authenticate"]]


@pytest.mark.parametrize("proof", [{"htu": f"{ISSUER}/other/mcp"}, {"htm": "GET"}, {"ath": "x"}, {"iat": 0}])
async def test_proof_for_another_request_or_token_is_refused(broker: Any, demo: httpx.AsyncClient, key: DpopKey,
                                                             proof: dict[str, Any]) -> None:
    token = broker.sign(cnf={"jkt": key.jkt})
    response = await demo.post("/demo/mcp", json=INITIALIZE, headers=dpop_headers(broker, key, token, **proof))
    assert response.status_code == 401 and challenge(response, "DPoP")["error"] == "invalid_dpop_proof"


async def test_replayed_proof_is_refused(broker: Any, demo: httpx.AsyncClient, key: DpopKey) -> None:
    token = broker.sign(cnf={"jkt": key.jkt})
    headers = dpop_headers(broker, key, token)
    assert (await demo.post("/demo/mcp", json=INITIALIZE, headers=headers)).status_code == 200
    replayed = await demo.post("/demo/mcp", json=INITIALIZE, headers=headers)
    assert replayed.status_code == 401 and replayed.json()["error_description"] == "proof already used"


async def test_missing_proof_is_refused(broker: Any, demo: httpx.AsyncClient, key: DpopKey) -> None:
    token = broker.sign(cnf={"jkt": key.jkt})
    response = await demo.post("/demo/mcp", json=INITIALIZE, headers={**MCP_HEADERS, "authorization": f"DPoP {token}"})
    assert response.status_code == 401 and response.json()["error_description"] == "no DPoP header"


async def test_unbound_token_with_the_dpop_scheme_is_refused(broker: Any, demo: httpx.AsyncClient,
                                                             key: DpopKey) -> None:
    response = await demo.post("/demo/mcp", json=INITIALIZE, headers=dpop_headers(broker, key, broker.sign()))
    assert response.status_code == 401 and challenge(response, "DPoP")["error"] == "invalid_token"


async def test_malformed_dpop_authorization_is_a_bad_request(broker: Any, demo: httpx.AsyncClient,
                                                             key: DpopKey) -> None:
    token = broker.sign(cnf={"jkt": key.jkt})
    headers = {**dpop_headers(broker, key, token), "authorization": f"DPoP {token} extra"}
    response = await demo.post("/demo/mcp", json=INITIALIZE, headers=headers)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


async def test_dpop_token_without_the_tool_scope_gets_a_dpop_step_up_challenge(broker: Any, demo: httpx.AsyncClient,
                                                                               key: DpopKey) -> None:
    token = broker.sign(cnf={"jkt": key.jkt}, scope="tools:read")
    session = await initialize(demo, lambda: dpop_headers(broker, key, token))
    response = await demo.post("/demo/mcp", json=CALL_WHOAMI, headers={**dpop_headers(broker, key, token), **session})
    assert response.status_code == 403
    assert response.headers["www-authenticate"].startswith("DPoP ")
    params = challenge(response, "DPoP")
    assert (params["error"], params["scope"], params["algs"]) == ("insufficient_scope", "tools:read tools:call", ALGS)


async def test_require_dpop_refuses_bearer_with_a_dpop_challenge_only(broker: Any, key: DpopKey) -> None:
    async with demo_app(broker, require_dpop=True) as demo:
        response = await demo.post("/demo/mcp", json=INITIALIZE,
                                   headers={**MCP_HEADERS, "authorization": f"Bearer {broker.sign()}"})
        assert response.status_code == 401
        assert [h.split(" ")[0] for h in response.headers.get_list("www-authenticate")] == ["DPoP"]
        assert challenge(response, "DPoP")["error"] == "invalid_token"
        token = broker.sign(cnf={"jkt": key.jkt})
        accepted = await demo.post("/demo/mcp", json=INITIALIZE, headers=dpop_headers(broker, key, token))
        assert accepted.status_code == 200
        metadata = (await demo.get("/.well-known/oauth-protected-resource/demo/mcp")).json()
        assert metadata["dpop_bound_access_tokens_required"] is True


@pytest.mark.parametrize("kid", ['a"b', "a\\b", "ké", "a\nb"])
async def test_token_with_an_unquotable_kid_gets_a_401_not_a_500(broker: Any, demo: httpx.AsyncClient, key: DpopKey,
                                                                 kid: str) -> None:
    """The kid is the caller's text: it is logged (cut short), never put in the challenge."""
    token = broker.sign(cnf={"jkt": key.jkt}, headers={"kid": kid})
    response = await demo.post("/demo/mcp", json=INITIALIZE, headers=dpop_headers(broker, key, token))
    assert response.status_code == 401
    metadata = f"{ISSUER}/.well-known/oauth-protected-resource/demo/mcp"
    assert challenge(response, "DPoP") == {"error": "invalid_token", "algs": ALGS, "error_description": "unknown kid",
                                           "resource_metadata": metadata}


async def test_a_refusal_whose_description_cannot_be_quoted_still_gets_its_challenge(broker: Any) -> None:
    from broker.resource import DpopAuthMiddleware, DpopError

    verifier = broker.verifier()

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise DpopError("invalid_token", 'a "quoted" reason')

    verifier.verify_dpop = refuse  # type: ignore[method-assign]
    app = DpopAuthMiddleware(lambda scope, receive, send: None, verifier=verifier)  # type: ignore[arg-type,return-value]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http:
        response = await http.post("/demo/mcp", headers={"authorization": "DPoP abc", "dpop": "x"})
    assert response.status_code == 401 and response.json()["error_description"] == 'a "quoted" reason'
    assert challenge(response, "DPoP") == {"error": "invalid_token", "algs": ALGS}


@pytest.mark.parametrize("path", ["/demo/mcp%3Fx", "/a%00b", "/caf%C3%A9", "/caf%c3%a9", "/a%2Fb"])
async def test_htu_is_compared_with_the_path_as_sent(broker: Any, key: DpopKey, path: str) -> None:
    """The request's raw path, percent-encoding and all: the decoded one would turn %3F into a query."""
    from broker.resource import DpopAuthMiddleware

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = DpopAuthMiddleware(inner, verifier=broker.verifier())
    token = broker.sign(cnf={"jkt": key.jkt})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as http:
        response = await http.post(path, headers=dpop_headers(broker, key, token, htu=ISSUER + path))
    assert response.status_code == 204, response.text
