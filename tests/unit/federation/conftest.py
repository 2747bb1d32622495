"""The fake IdP and an OIDC connector over it, for every federation test (a module overrides what it changes)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from broker.federation import OidcConnector
from tests.unit.federation.fakes import FakeIdp


@pytest.fixture
def idp() -> FakeIdp:
    return FakeIdp()


@pytest.fixture
async def http(idp: FakeIdp) -> AsyncIterator[httpx.AsyncClient]:
    async with idp.client() as client:
        yield client


@pytest.fixture
def connector(idp: FakeIdp, http: httpx.AsyncClient) -> OidcConnector:
    return idp.connector(http)
