"""JWKS caching: reuse within the TTL, refetch on an unknown kid (rate-limited), one fetch for many logins."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from broker.federation import InvalidIdToken, OidcConnector, UpstreamUnavailable
from tests.unit.federation.fakes import FakeIdp, FakeSigningKey, log_in

KEYS = "/v1/keys"


async def test_second_login_does_not_refetch_the_jwks(idp: FakeIdp, connector: OidcConnector) -> None:
    await log_in(connector)
    idp.clock.advance(300)
    await log_in(connector)
    assert idp.count(KEYS) == 1
    assert idp.count("/openid-configuration") == 1


async def test_jwks_is_refetched_after_its_ttl(idp: FakeIdp, connector: OidcConnector) -> None:
    await log_in(connector)
    idp.clock.advance(601)
    await log_in(connector)
    assert idp.count(KEYS) == 2


async def test_rotated_key_is_found_by_one_refetch(idp: FakeIdp, connector: OidcConnector) -> None:
    await log_in(connector)
    idp.key = FakeSigningKey("RS256", kid="key-2")
    idp.published = [idp.published[0], idp.key.jwk]
    idp.clock.advance(5)  # well inside the cache TTL
    assert (await log_in(connector)).subject == "00u-alice"
    assert idp.count(KEYS) == 2


async def test_unknown_kid_refetch_is_rate_limited(idp: FakeIdp, connector: OidcConnector) -> None:
    await log_in(connector)
    idp.signing_key = FakeSigningKey("RS256", kid="forged")
    for _ in range(20):
        with pytest.raises(InvalidIdToken):
            await log_in(connector)
        idp.clock.advance(1)
    assert idp.count(KEYS) == 2  # the first fetch, then one refetch in the first 30 s
    idp.clock.advance(15)  # 35 s after the refetch
    with pytest.raises(InvalidIdToken):
        await log_in(connector)
    assert idp.count(KEYS) == 3


async def test_a_key_published_after_a_suppressed_refetch_is_found_later(idp: FakeIdp,
                                                                          connector: OidcConnector) -> None:
    idp.signing_key = FakeSigningKey("RS256", kid="key-2")
    with pytest.raises(InvalidIdToken):
        await log_in(connector)  # fetch + refetch: key-2 is not published yet
    idp.published.append(idp.signing_key.jwk)
    with pytest.raises(InvalidIdToken):
        await log_in(connector)  # within 30 s: no refetch
    idp.clock.advance(30)
    assert (await log_in(connector)).subject == "00u-alice"
    assert idp.count(KEYS) == 3


async def test_failed_refetch_counts_against_the_rate_limit(idp: FakeIdp, connector: OidcConnector) -> None:
    await log_in(connector)
    idp.signing_key = FakeSigningKey("RS256", kid="forged")
    idp.routes["/oauth2/default/v1/keys"] = lambda request: httpx.Response(500)
    with pytest.raises(UpstreamUnavailable):
        await log_in(connector)
    with pytest.raises(InvalidIdToken):
        await log_in(connector)
    assert idp.count(KEYS) == 2


async def test_jwks_fetch_failure_is_not_cached(idp: FakeIdp, connector: OidcConnector) -> None:
    idp.routes["/oauth2/default/v1/keys"] = lambda request: httpx.Response(503)
    with pytest.raises(UpstreamUnavailable):
        await log_in(connector)
    idp.routes.clear()
    assert (await log_in(connector)).subject == "00u-alice"


async def test_concurrent_logins_share_one_fetch(idp: FakeIdp, connector: OidcConnector) -> None:
    async def slow_keys(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        return httpx.Response(200, json={"keys": idp.published})

    idp.routes["/oauth2/default/v1/keys"] = slow_keys
    identities = await asyncio.gather(*(log_in(connector) for _ in range(10)))
    assert {identity.subject for identity in identities} == {"00u-alice"}
    assert idp.count(KEYS) == 1
    assert idp.count("/openid-configuration") == 1


async def test_a_flood_of_unknown_kids_costs_at_most_one_refetch(idp: FakeIdp, connector: OidcConnector) -> None:
    await log_in(connector)
    idp.signing_key = FakeSigningKey("RS256", kid="forged")
    results = await asyncio.gather(*(log_in(connector) for _ in range(50)), return_exceptions=True)
    assert all(isinstance(result, InvalidIdToken) for result in results)
    assert idp.count(KEYS) == 2


async def test_a_key_replaced_under_the_same_kid_is_found_by_one_refetch(idp: FakeIdp,
                                                                         connector: OidcConnector) -> None:
    await log_in(connector)
    idp.key = FakeSigningKey("RS256", kid="key-1")  # the IdP re-keyed, keeping the kid
    idp.published = [idp.key.jwk]
    idp.clock.advance(5)  # well inside the cache TTL
    assert (await log_in(connector)).subject == "00u-alice"
    assert idp.count(KEYS) == 2


async def test_bad_signatures_under_a_known_kid_refetch_at_most_once_per_interval(idp: FakeIdp,
                                                                                  connector: OidcConnector) -> None:
    await log_in(connector)
    idp.signing_key = FakeSigningKey("RS256", kid="key-1")  # forged with the published kid
    results = await asyncio.gather(*(log_in(connector) for _ in range(20)), return_exceptions=True)
    assert all(isinstance(r, InvalidIdToken) and "signature" in r.description for r in results), results
    assert idp.count(KEYS) == 2  # the first fetch, then one refetch in the first 30 s
    idp.clock.advance(31)
    with pytest.raises(InvalidIdToken):
        await log_in(connector)
    assert idp.count(KEYS) == 3


async def test_a_failed_refetch_after_a_bad_signature_keeps_the_signature_error(idp: FakeIdp,
                                                                                connector: OidcConnector) -> None:
    await log_in(connector)
    idp.signing_key = FakeSigningKey("RS256", kid="key-1")
    idp.routes["/oauth2/default/v1/keys"] = lambda request: httpx.Response(503)
    with pytest.raises(InvalidIdToken, match="signature"):
        await log_in(connector)
    assert idp.count(KEYS) == 2
