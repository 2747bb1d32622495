"""Attacks at the upstream side (issue 4, item 6): an ID token of IdP A presented to IdP B's connector,
and an authorization response that names another issuer (mix-up, RFC 9207)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from broker.federation import InvalidIdToken, IssuerMismatch, UpstreamUnavailable
from broker.federation.entra import EntraConnector
from broker.federation.okta import OktaConnector
from tests.unit.federation.fakes import (
    ALICE_OID,
    ENTRA_LOGIN,
    TENANT,
    FakeGraph,
    FakeIdp,
    FakeSigningKey,
    entra_client,
    entra_idp,
    log_in,
)

OKTA = "https://acme.okta.com/oauth2/default"
ENTRA = f"{ENTRA_LOGIN}/{TENANT}/v2.0"


@pytest.fixture
def okta_idp() -> FakeIdp:
    return FakeIdp(issuer=OKTA)


@pytest.fixture
def entra_upstream() -> FakeIdp:
    return entra_idp()


@pytest.fixture
async def entra(entra_upstream: FakeIdp) -> AsyncIterator[EntraConnector]:
    async with entra_client(entra_upstream, FakeGraph()) as http:
        yield entra_upstream.connector(http, EntraConnector, type="entra")


@pytest.fixture
async def okta(okta_idp: FakeIdp) -> AsyncIterator[OktaConnector]:
    async with okta_idp.client() as http:
        yield okta_idp.connector(http, OktaConnector, type="okta")


def okta_token_for_entra(okta_idp: FakeIdp, **claims: object) -> str:
    """A genuine Okta ID token, for the same client id and this login's nonce, with Entra-like claims."""
    okta_idp.claim_changes |= {"tid": TENANT, "oid": ALICE_OID, **claims}
    return okta_idp.issue_id_token()


async def test_id_token_of_idp_a_at_idp_b_is_refused_by_its_keys(okta_idp: FakeIdp, entra_upstream: FakeIdp,
                                                                 entra: EntraConnector) -> None:
    entra_upstream.id_token = okta_token_for_entra(okta_idp)
    with pytest.raises(InvalidIdToken, match="key the identity provider does not publish"):
        await log_in(entra)


async def test_id_token_of_idp_a_naming_b_as_issuer_is_refused_by_its_keys(okta_idp: FakeIdp,
                                                                           entra_upstream: FakeIdp,
                                                                           entra: EntraConnector) -> None:
    entra_upstream.id_token = okta_token_for_entra(okta_idp, iss=ENTRA)  # A signs claims that look like B's
    with pytest.raises(InvalidIdToken, match="key the identity provider does not publish"):
        await log_in(entra)


async def test_id_token_of_idp_a_with_bs_key_id_fails_the_signature(okta_idp: FakeIdp, entra_upstream: FakeIdp,
                                                                    entra: EntraConnector) -> None:
    okta_idp.header_changes["kid"] = entra_upstream.key.kid  # a kid B publishes, a key B does not hold
    entra_upstream.id_token = okta_token_for_entra(okta_idp, iss=ENTRA)
    with pytest.raises(InvalidIdToken, match="signature"):
        await log_in(entra)


async def test_id_token_of_idp_a_fails_the_issuer_even_if_b_published_as_key(okta_idp: FakeIdp,
                                                                             entra_upstream: FakeIdp,
                                                                             entra: EntraConnector) -> None:
    entra_upstream.published.append(okta_idp.key.jwk)  # shared or leaked keys still do not make A's token B's
    entra_upstream.id_token = okta_token_for_entra(okta_idp)
    with pytest.raises(InvalidIdToken, match="issuer"):
        await log_in(entra)


async def test_entra_token_at_okta_is_refused(okta_idp: FakeIdp, entra_upstream: FakeIdp,
                                              okta: OktaConnector) -> None:
    okta_idp.id_token = entra_upstream.issue_id_token()
    with pytest.raises(InvalidIdToken, match="key the identity provider does not publish"):
        await log_in(okta)


async def test_two_okta_authorization_servers_do_not_accept_each_others_tokens(okta_idp: FakeIdp) -> None:
    """Same org, same keys (worst case): the issuer still tells the custom servers apart."""
    other = FakeIdp(issuer="https://acme.okta.com/oauth2/aus0ther", key=okta_idp.key)
    okta_idp.id_token = other.issue_id_token()
    async with okta_idp.client() as http:
        with pytest.raises(InvalidIdToken, match="issuer"):
            await log_in(okta_idp.connector(http, OktaConnector, type="okta"))


async def test_callback_iss_of_another_idp_is_a_mix_up(okta_idp: FakeIdp, okta: OktaConnector,
                                                       entra: EntraConnector) -> None:
    okta_idp.discovery["authorization_response_iss_parameter_supported"] = True
    await okta.check_response_issuer(OKTA)
    with pytest.raises(IssuerMismatch):
        await okta.check_response_issuer(ENTRA)  # Entra's response delivered to Okta's callback
    with pytest.raises(IssuerMismatch):
        await entra.check_response_issuer(OKTA)  # and the other way round
    with pytest.raises(IssuerMismatch):
        await okta.check_response_issuer(None)  # Okta advertises iss: a response without it is suspect


async def test_a_token_signed_with_an_unpublished_key_of_the_same_idp_is_refused(okta_idp: FakeIdp,
                                                                                okta: OktaConnector) -> None:
    okta_idp.signing_key = FakeSigningKey(kid="attacker-key")
    with pytest.raises(InvalidIdToken, match="does not publish"):
        await log_in(okta)


@pytest.mark.parametrize("connector_type", ["okta", "entra"])
async def test_discovery_of_b_cannot_borrow_as_issuer(okta_idp: FakeIdp, entra_upstream: FakeIdp,
                                                      connector_type: str) -> None:
    victim, attacker = (okta_idp, entra_upstream) if connector_type == "okta" else (entra_upstream, okta_idp)
    victim.discovery = {**attacker.discovery}  # B's discovery document points at A's endpoints
    async with httpx.AsyncClient(transport=httpx.MockTransport(victim.handle)) as http:
        cls = OktaConnector if connector_type == "okta" else EntraConnector
        connector = victim.connector(http, cls, type=connector_type)
        with pytest.raises(UpstreamUnavailable, match="different issuer"):
            await log_in(connector)
