"""Users and clients of the test IdP, straight from configuration (``[[testidp.users]]``,
``[[testidp.clients]]``), with constant-time credential checks."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import unquote_plus

from broker.config import TestIdpClient, TestIdpSettings, TestIdpUser
from broker.testidp.errors import InvalidClient, InvalidRequest
from broker.testidp.params import ProviderParams

# Compared against when the username or client is unknown, so both paths cost the same.
_DUMMY_SECRET = "testidp-no-such-principal"


class Directory:
    def __init__(self, settings: TestIdpSettings):
        self._users = {user.username: user for user in settings.users}
        self._clients = {client.client_id: client for client in settings.clients}

    def user(self, username: str) -> TestIdpUser | None:
        return self._users.get(username)

    def client(self, client_id: str) -> TestIdpClient | None:
        return self._clients.get(client_id)

    def users(self) -> list[TestIdpUser]:
        return list(self._users.values())

    def check_password(self, username: str, password: str) -> TestIdpUser | None:
        """The user when ``password`` is theirs; None otherwise (compared in constant time)."""
        user = self._users.get(username)
        expected = user.password.get_secret_value() if user else _DUMMY_SECRET
        matches = secrets_equal(password, expected)
        return user if user is not None and matches else None

    def authenticate_client(self, params: ProviderParams, authorization: str | None) -> TestIdpClient:
        """RFC 6749 §2.3.1: client_secret_basic or client_secret_post, exactly one of them.

        Raises ``InvalidClient`` (401) when authentication is missing or fails and
        ``InvalidRequest`` when the request mixes methods or names two clients.
        """
        basic = basic_credentials(authorization)
        posted_secret = params.get("client_secret")
        if basic is not None and posted_secret is not None:
            raise InvalidRequest("use one client authentication method, not two")  # RFC 6749 §2.3
        if basic is not None:
            client_id, secret = basic
            if params.get("client_id") not in (None, client_id):
                raise InvalidRequest("client_id does not match the authenticated client")
        elif posted_secret is not None:
            client_id, secret = params.require("client_id"), posted_secret
        else:
            raise InvalidClient("client authentication is required")
        return self._verify_client(client_id, secret)

    def _verify_client(self, client_id: str, secret: str) -> TestIdpClient:
        client = self._clients.get(client_id)
        expected = client.client_secret.get_secret_value() if client else _DUMMY_SECRET
        if not secrets_equal(secret, expected) or client is None:
            raise InvalidClient("client authentication failed")
        return client


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """Client id and secret from ``Authorization: Basic``; None when there is no header.

    RFC 6749 §2.3.1: both are form-urlencoded before base64, so they are decoded here.
    """
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClient("the token endpoint accepts HTTP Basic client authentication only")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            raise ValueError("no colon")
        return unquote_plus(client_id, errors="strict"), unquote_plus(secret, errors="strict")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidClient("malformed HTTP Basic credentials") from None


def secrets_equal(given: str, expected: str) -> bool:
    """Constant-time comparison that does not leak the expected length either."""
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                               hashlib.sha256(expected.encode()).digest())
