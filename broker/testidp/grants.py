"""The token endpoint: one dispatcher, one handler per grant type.

The dispatcher does the steps no grant may skip (duplicate parameters, client
authentication) and then calls the handler registered for ``grant_type``; later grants
(token exchange for ID-JAGs) register themselves the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from broker.config import TestIdpClient, TestIdpUser
from broker.testidp import pkce, scopes
from broker.testidp.directory import Directory
from broker.testidp.errors import InvalidGrant, InvalidScope, UnsupportedGrantType
from broker.testidp.jwts import (
    ACCESS_TOKEN_LIFETIME,
    CLOCK_SKEW,
    Authentication,
    KeySource,
    sign_access_token,
    sign_id_token,
)
from broker.testidp.params import ProviderParams
from broker.testidp.replay import ReplayStoreFull, UsedCodes
from broker.testidp.sealed import AuthorizationCode, RefreshGrant, Sealer

log = logging.getLogger("broker.testidp")


@dataclass(frozen=True)
class TokenRequest:
    """A token request whose client is authenticated: what every grant handler receives."""

    client: TestIdpClient
    params: ProviderParams
    session: Session
    now: int


GrantHandler = Callable[[TokenRequest], dict[str, Any]]


class TokenEndpoint:
    def __init__(self, issuer: str, userinfo_endpoint: str, directory: Directory, sealer: Sealer,
                 keys: KeySource, refresh_token_lifetime: int, clock: Callable[[], float]):
        self.issuer = issuer
        self.userinfo_endpoint = userinfo_endpoint
        self.directory = directory
        self.sealer = sealer
        self.keys = keys
        self.refresh_token_lifetime = refresh_token_lifetime
        self.clock = clock
        self.used_codes = UsedCodes()
        self.grants: dict[str, GrantHandler] = {"authorization_code": self.authorization_code,
                                                "refresh_token": self.refresh_token}

    def handle(self, params: ProviderParams, authorization: str | None, session: Session) -> dict[str, Any]:
        """Authenticate the client, then run the grant; returns the RFC 6749 §5.1 body or raises."""
        params.reject_duplicates()  # RFC 6749 §3.2
        client = self.directory.authenticate_client(params, authorization)  # RFC 6749 §3.2.1, every grant
        handler = self.grants.get(params.require("grant_type"))
        if handler is None:
            raise UnsupportedGrantType("grant_type is not supported")  # RFC 6749 §5.2
        return handler(TokenRequest(client, params, session, int(self.clock())))

    def authorization_code(self, request: TokenRequest) -> dict[str, Any]:
        """RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6): redeem a code once, for its client only."""
        opened = self.sealer.open_code(request.params.require("code"))
        code: AuthorizationCode = opened.value
        if request.now >= code.exp:
            raise InvalidGrant("authorization code expired")  # RFC 6749 §4.1.2: short-lived
        self._claim_once(opened.digest, code.exp, request.now)  # RFC 6749 §4.1.2: single use
        if code.client_id != request.client.client_id:
            raise InvalidGrant("authorization code was issued to another client")  # RFC 6749 §4.1.3
        if request.params.require("redirect_uri") != code.redirect_uri:
            raise InvalidGrant("redirect_uri differs from the authorization request")  # RFC 6749 §4.1.3
        pkce.verify(request.params.get("code_verifier"), code.code_challenge)  # RFC 7636 §4.6
        auth = Authentication(self._current_user(code.username), code.client_id, code.scope, code.auth_time)
        refresh = None
        if scopes.OFFLINE_ACCESS in code.scope:  # OIDC Core §11: refresh tokens only for offline_access
            refresh = RefreshGrant(client_id=code.client_id, username=code.username, scope=code.scope,
                                   auth_time=code.auth_time, exp=request.now + self.refresh_token_lifetime)
        return self.issue(request, auth, nonce=code.nonce, refresh=refresh)

    def refresh_token(self, request: TokenRequest) -> dict[str, Any]:
        """RFC 6749 §6: bound to its client and user; scope may only narrow.

        Refresh tokens are stateless, so a used one stays valid until its absolute expiry,
        which the new refresh token inherits (no sliding lifetime).
        """
        opened = self.sealer.open_refresh(request.params.require("refresh_token"))
        grant: RefreshGrant = opened.value
        if request.now >= grant.exp:
            raise InvalidGrant("refresh token expired")
        if grant.client_id != request.client.client_id:
            raise InvalidGrant("refresh token was issued to another client")  # RFC 6749 §6
        scope = _narrowed(request.params.get("scope"), grant.scope)
        auth = Authentication(self._current_user(grant.username), grant.client_id, scope, grant.auth_time)
        return self.issue(request, auth, nonce=None, refresh=grant)

    def issue(self, request: TokenRequest, auth: Authentication, nonce: str | None,
              refresh: RefreshGrant | None) -> dict[str, Any]:
        """The RFC 6749 §5.1 response: access token, ID token when ``openid``, refresh token if given."""
        key = self.keys.active(request.session)
        access_token = sign_access_token(key, self.issuer, self.userinfo_endpoint, auth, request.now)
        body: dict[str, Any] = {"access_token": access_token, "token_type": "Bearer",
                                "expires_in": ACCESS_TOKEN_LIFETIME, "scope": " ".join(auth.scope)}
        if scopes.OPENID in auth.scope:
            body["id_token"] = sign_id_token(key, self.issuer, auth, request.now, nonce, access_token)
        if refresh is not None:
            body["refresh_token"] = self.sealer.seal_refresh(refresh)
        log.info("test IdP tokens issued", extra={"user": auth.user.username, "client_id": auth.client_id})
        return body

    def _claim_once(self, digest: bytes, exp: int, now: int) -> None:
        try:
            first_use = self.used_codes.claim(digest, forget_after=exp + CLOCK_SKEW, now=now)
        except ReplayStoreFull:
            raise InvalidGrant("too many codes in flight; log in again shortly") from None
        if not first_use:
            raise InvalidGrant("authorization code already used")

    def _current_user(self, username: str) -> TestIdpUser:
        user = self.directory.user(username)
        if user is None:
            raise InvalidGrant("the user no longer exists")  # removed from the configuration since login
        return user


def _narrowed(raw: str | None, granted: tuple[str, ...]) -> tuple[str, ...]:
    """RFC 6749 §6: a requested scope must not include any scope not originally granted."""
    if raw is None:
        return granted
    requested = scopes.parse(raw)
    if not set(requested) <= set(granted):
        raise InvalidScope("scope exceeds the scope originally granted")
    return requested
