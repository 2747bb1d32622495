"""Test doubles for the test IdP's core: a key ring that needs no database."""

from __future__ import annotations

import datetime as dt
from typing import Any

from broker.config import TestIdpSettings
from broker.keys.crypto import Encryptor
from broker.keys.ring import ActiveKey, generate, public_jwk
from broker.testidp.provider import TestIdentityProvider

ISSUER = "http://127.0.0.1:8000/testidp"
CLIENT_ID = "mcp-auth-broker"
CLIENT_SECRET = "testidp-client-secret"
REDIRECT_URI = "http://127.0.0.1:8000/callback/test"
SETTINGS = TestIdpSettings.model_validate({
    "enabled": True,
    "users": [{"username": "alice", "password": "alice-pw", "email": "alice@example.com",
               "name": "Alice Anders", "groups": ["engineering"]},
              {"username": "bob", "password": "bob-pw", "email": "bob@example.com", "groups": ["sales"]}],
    "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [REDIRECT_URI]},
                {"client_id": "other", "client_secret": "other-secret", "redirect_uris": [REDIRECT_URI]}],
})


class FakeKeyRing:
    """One in-memory ES256 key; ignores the session it is given."""

    def __init__(self) -> None:
        private_key = generate("ES256")
        self.public_jwk = public_jwk(private_key, "ES256")
        self.key = ActiveKey(kid=self.public_jwk["kid"], algorithm="ES256", private_key=private_key)

    def active(self, session: Any, now: dt.datetime | None = None) -> ActiveKey:
        return self.key

    def jwks(self, session: Any, grace: dt.timedelta, now: dt.datetime | None = None) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_provider(clock: FakeClock | None = None, encryptor: Encryptor | None = None) -> TestIdentityProvider:
    return TestIdentityProvider(SETTINGS, issuer=ISSUER, keyring=FakeKeyRing(),
                                encryptor=encryptor or Encryptor(b"k" * 32), clock=clock or FakeClock())
