"""BrokerTokenVerifier with DPoP (RFC 9449 §7): verify_dpop, bound tokens as Bearer, require_dpop, replay."""

from __future__ import annotations

from typing import Any

import pytest

from broker.resource import BrokerTokenVerifier, DpopError, ProofReplayCache
from tests.support.dpop import DpopKey

URL = "http://127.0.0.1:8000/demo/mcp"


@pytest.fixture(scope="module")
def key() -> DpopKey:
    return DpopKey()


def bound_token(broker: Any, key: DpopKey, **claims: Any) -> str:
    return broker.sign(cnf={"jkt": key.jkt}, **claims)


async def refused(verifier: BrokerTokenVerifier, token: str, proofs: list[str], *, method: str = "POST",
                  url: str = URL) -> DpopError:
    with pytest.raises(DpopError) as caught:
        await verifier.verify_dpop(token, proofs, method=method, url=url)
    return caught.value


# --- accepted ------------------------------------------------------------------------------------

async def test_bound_token_with_its_proof_is_accepted_and_names_the_key(broker: Any, key: DpopKey) -> None:
    token = bound_token(broker, key)
    proof = key.proof("POST", URL, access_token=token, iat=broker.clock())
    access = await broker.verifier().verify_dpop(token, [proof], method="POST", url=URL)
    assert access.jkt == key.jkt and access.subject == "alice" and access.token == token


async def test_proof_for_the_request_url_with_a_query_is_accepted(broker: Any, key: DpopKey) -> None:
    token = bound_token(broker, key)
    proof = key.proof("GET", URL, access_token=token, iat=broker.clock())
    assert await broker.verifier().verify_dpop(token, [proof], method="GET", url=URL + "?session=1")


async def test_unbound_bearer_token_is_still_accepted_by_default(broker: Any) -> None:
    assert await broker.verifier().verify_token(broker.sign()) is not None


# --- refused: the token ---------------------------------------------------------------------------

async def test_bound_token_sent_as_bearer_is_refused(broker: Any, key: DpopKey) -> None:
    assert await broker.verifier().verify_token(bound_token(broker, key)) is None


@pytest.mark.parametrize("cnf", [{"x5t#S256": "abc"}, {}, "not an object"])
async def test_token_with_any_confirmation_sent_as_bearer_is_refused(broker: Any, cnf: Any) -> None:
    assert await broker.verifier().verify_token(broker.sign(cnf=cnf)) is None


async def test_require_dpop_refuses_bearer_tokens(broker: Any) -> None:
    assert await broker.verifier(require_dpop=True).verify_token(broker.sign()) is None


async def test_unbound_token_sent_with_dpop_is_refused_as_invalid_token(broker: Any, key: DpopKey) -> None:
    token = broker.sign()
    error = await refused(broker.verifier(), token, [key.proof("POST", URL, access_token=token, iat=broker.clock())])
    assert (error.error, error.description) == ("invalid_token", "token is not DPoP-bound")


async def test_expired_bound_token_with_a_good_proof_is_refused_as_invalid_token(broker: Any, key: DpopKey) -> None:
    token = bound_token(broker, key, exp=int(broker.clock()) - 3600)
    error = await refused(broker.verifier(), token, [key.proof("POST", URL, access_token=token, iat=broker.clock())])
    assert error.error == "invalid_token" and error.description.startswith("token expired")


async def test_token_for_another_resource_is_refused_even_with_a_good_proof(broker: Any, key: DpopKey) -> None:
    token = bound_token(broker, key, aud="http://127.0.0.1:8000/other/mcp")
    error = await refused(broker.verifier(), token, [key.proof("POST", URL, access_token=token, iat=broker.clock())])
    assert error.error == "invalid_token"


# --- refused: the proof ---------------------------------------------------------------------------

async def test_proof_by_another_key_than_the_bound_one_is_refused(broker: Any, key: DpopKey) -> None:
    token = bound_token(broker, key)
    thief = DpopKey()
    error = await refused(broker.verifier(), token, [thief.proof("POST", URL, access_token=token, iat=broker.clock())])
    assert (error.error, error.description) == ("invalid_dpop_proof", "proof key is not the key the token is bound to")


async def test_proof_with_the_hash_of_another_token_is_refused(broker: Any, key: DpopKey) -> None:
    token = bound_token(broker, key)
    proof = key.proof("POST", URL, access_token=bound_token(broker, key), iat=broker.clock())
    error = await refused(broker.verifier(), token, [proof])
    assert (error.error, error.description) == ("invalid_dpop_proof", "ath does not match the access token")


async def test_proof_without_ath_is_refused(broker: Any, key: DpopKey) -> None:
    token = bound_token(broker, key)
    error = await refused(broker.verifier(), token, [key.proof("POST", URL, iat=broker.clock())])
    assert error.description == "ath does not match the access token"


@pytest.mark.parametrize("method,url,expected", [
    ("GET", URL, "htm does not match the request method"),
    ("POST", "http://127.0.0.1:8000/other/mcp", "htu does not match the request URL"),
    ("POST", "http://127.0.0.1:9000/demo/mcp", "htu does not match the request URL"),
])
async def test_proof_for_another_method_or_url_is_refused(broker: Any, key: DpopKey, method: str, url: str,
                                                          expected: str) -> None:
    token = bound_token(broker, key)
    proof = key.proof("POST", URL, access_token=token, iat=broker.clock())
    error = await refused(broker.verifier(), token, [proof], method=method, url=url)
    assert (error.error, error.description) == ("invalid_dpop_proof", expected)


@pytest.mark.parametrize("offset", [-301, 301])
async def test_stale_or_future_proof_is_refused(broker: Any, key: DpopKey, offset: int) -> None:
    token = bound_token(broker, key)
    proof = key.proof("POST", URL, access_token=token, iat=broker.clock() + offset)
    assert (await refused(broker.verifier(), token, [proof])).description == "iat is outside the accepted window"


async def test_iat_window_is_configurable(broker: Any, key: DpopKey) -> None:
    token = bound_token(broker, key)
    proof = key.proof("POST", URL, access_token=token, iat=broker.clock() - 30)
    error = await refused(broker.verifier(dpop_iat_window=10), token, [proof])
    assert error.description == "iat is outside the accepted window"


async def test_proof_algorithm_outside_the_configured_list_is_refused(broker: Any) -> None:
    rsa_key = DpopKey("RS256")
    token = bound_token(broker, rsa_key)
    proof = rsa_key.proof("POST", URL, access_token=token, iat=broker.clock())
    assert (await refused(broker.verifier(dpop_algorithms=["ES256"]), token, [proof])).description == "alg not allowed"


def test_configured_proof_algorithms_refuse_none_and_hmac(broker: Any) -> None:
    for algorithms in (["none"], ["HS256"], []):
        with pytest.raises(ValueError):
            broker.verifier(dpop_algorithms=algorithms)


async def test_replayed_proof_is_refused(broker: Any, key: DpopKey) -> None:
    verifier = broker.verifier()
    token = bound_token(broker, key)
    proof = key.proof("POST", URL, access_token=token, iat=broker.clock())
    await verifier.verify_dpop(token, [proof], method="POST", url=URL)
    error = await refused(verifier, token, [proof])
    assert (error.error, error.description) == ("invalid_dpop_proof", "proof already used")


async def test_refused_request_does_not_burn_the_proof(broker: Any, key: DpopKey) -> None:
    """A proof is remembered only once everything passed: a failure of the token does not consume it."""
    verifier = broker.verifier()
    token = bound_token(broker, key)
    proof = key.proof("POST", URL, access_token=token, iat=broker.clock())
    broker.unpublish(broker.kid)
    await refused(verifier, token, [proof])
    broker.publish(broker.kid)
    broker.clock.advance(31)  # past the JWKS refetch rate limit
    assert await verifier.verify_dpop(token, [proof], method="POST", url=URL)


async def test_two_proofs_are_refused(broker: Any, key: DpopKey) -> None:
    token = bound_token(broker, key)
    proof = key.proof("POST", URL, access_token=token, iat=broker.clock())
    assert (await refused(broker.verifier(), token, [proof, proof])).description == "more than one DPoP header"


async def test_rejections_are_logged_without_token_or_proof(broker: Any, key: DpopKey,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    token = bound_token(broker, key)
    proof = DpopKey().proof("POST", URL, access_token=token, iat=broker.clock())
    with caplog.at_level("INFO", logger="broker.resource.verifier"):
        await refused(broker.verifier(), token, [proof])
    assert "proof key is not the key the token is bound to" in caplog.text
    assert token not in caplog.text and proof not in caplog.text


# --- the proven context ---------------------------------------------------------------------------

async def test_verify_token_returns_the_proven_token_only_for_that_token(broker: Any, key: DpopKey) -> None:
    verifier = broker.verifier()
    token = bound_token(broker, key)
    access = await verifier.verify_dpop(token, [key.proof("POST", URL, access_token=token, iat=broker.clock())],
                                        method="POST", url=URL)
    with verifier.proven(access):
        assert await verifier.verify_token(token) is access
        assert await verifier.verify_token(bound_token(broker, key)) is None  # another bound token: as Bearer
    assert await verifier.verify_token(token) is None  # outside the request


# --- the replay memory ----------------------------------------------------------------------------

def test_replay_cache_forgets_a_proof_once_its_window_has_passed() -> None:
    cache = ProofReplayCache()
    assert cache.use("k", "j", expires_at=100, now=0)
    assert not cache.use("k", "j", expires_at=100, now=99)
    assert cache.use("k", "j", expires_at=200, now=100)
    assert len(cache) == 1


def test_replay_cache_keys_by_key_and_jti() -> None:
    cache = ProofReplayCache()
    assert cache.use("key-a", "j", expires_at=100, now=0)
    assert cache.use("key-b", "j", expires_at=100, now=0)


def test_full_replay_cache_refuses_rather_than_forgets() -> None:
    cache = ProofReplayCache(max_entries=2)
    assert cache.use("k", "1", expires_at=100, now=0) and cache.use("k", "2", expires_at=50, now=0)
    assert not cache.use("k", "3", expires_at=100, now=10) and cache.full()
    assert cache.use("k", "3", expires_at=100, now=50)  # "2" expired: room again
    assert not cache.use("k", "1", expires_at=100, now=50)  # and "1" is still remembered


async def test_full_replay_memory_refuses_proofs_with_its_own_reason(broker: Any, key: DpopKey) -> None:
    verifier = broker.verifier(replay_cache=ProofReplayCache(max_entries=1))
    token = bound_token(broker, key)
    await verifier.verify_dpop(token, [key.proof("POST", URL, access_token=token, iat=broker.clock())],
                               method="POST", url=URL)
    error = await refused(verifier, token, [key.proof("POST", URL, access_token=token, iat=broker.clock())])
    assert error.description == "too many recent proofs to remember"


async def test_fifty_concurrent_uses_of_one_proof_let_exactly_one_through(broker: Any, key: DpopKey) -> None:
    import anyio

    verifier = broker.verifier()
    token = bound_token(broker, key)
    proof = key.proof("POST", URL, access_token=token, iat=broker.clock())
    outcomes: list[str] = []

    async def use() -> None:
        try:
            await verifier.verify_dpop(token, [proof], method="POST", url=URL)
            outcomes.append("accepted")
        except DpopError as refused:
            outcomes.append(refused.description)

    async with anyio.create_task_group() as tasks:
        for _ in range(50):
            tasks.start_soon(use)
    assert sorted(outcomes) == ["accepted"] + ["proof already used"] * 49
