"""The built-in test OpenID Connect provider: the one object the web layer talks to.

A standards-correct OIDC provider for development and tests, not a bypass: the broker logs in
through it with the same connector code it uses for Okta. Users, passwords, groups and
clients come from configuration; codes and refresh tokens are sealed (AES-GCM) rather than
stored, so any broker instance can redeem them; only single use of codes is remembered, per
process. Production mode refuses to enable it (``broker.config``), and constructing it logs a
warning.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from broker.config import TestIdpSettings
from broker.keys.crypto import Encryptor
from broker.testidp import scopes
from broker.testidp.authorize import AuthorizationRequest, AuthorizationResponse, Authorizer
from broker.testidp.directory import Directory
from broker.testidp.errors import InsufficientScope, InvalidToken, OAuthError
from broker.testidp.exchange import ID_JAG, TOKEN_EXCHANGE, IdJagExchange
from broker.testidp.grants import GrantHandler, TokenEndpoint
from broker.testidp.jwts import (
    ACCESS_TOKEN_CLAIMS,
    ACCESS_TOKEN_TYP,
    ALGORITHM,
    CLOCK_SKEW,
    KEY_GRACE,
    KeySource,
    user_claims,
    verify_own_jwt,
)
from broker.testidp.params import ProviderParams
from broker.testidp.sealed import Sealer

TESTIDP_KEY_PURPOSE = "testidp"  # the KeyRing purpose of the test IdP's own signing keys
CLAIMS_SUPPORTED = ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "azp", "at_hash",
                    "email", "email_verified", "name", "groups"]

log = logging.getLogger("broker.testidp")


class TestIdentityProvider:
    """Discovery, JWKS, authorization, token and userinfo endpoints of the test IdP.

    Methods take parsed ``ProviderParams`` and a database session (for signing keys only) and return
    plain values; protocol failures raise ``OAuthError`` subclasses, a failed login raises
    ``LoginFailed``. Nothing here knows HTTP.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, settings: TestIdpSettings, issuer: str, keyring: KeySource, encryptor: Encryptor,
                 *, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.issuer = issuer
        self.keyring = keyring
        self.clock = clock
        self.directory = Directory(settings)
        sealer = Sealer(encryptor)
        self.authorizer = Authorizer(issuer, self.directory, sealer, settings.code_lifetime, clock)
        self.token_handler = TokenEndpoint(issuer, self.userinfo_endpoint, self.directory, sealer, keyring,
                                            settings.refresh_token_lifetime, clock)
        # A retired key stays published as long as the longest-lived token it signed.
        self.key_grace = max(KEY_GRACE, dt.timedelta(seconds=settings.id_jag_lifetime + CLOCK_SKEW))
        if settings.id_jag_audiences:  # Enterprise-Managed Authorization: only when audiences are configured
            exchange = IdJagExchange(issuer, self.directory, sealer, keyring, self.jwks, settings.id_jag_audiences,
                                     settings.id_jag_lifetime)
            self.register_grant(TOKEN_EXCHANGE, exchange.exchange)
        log.warning("the built-in TEST identity provider is enabled at %s: it accepts the passwords written "
                    "in the configuration and must never be used in production", issuer)

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.issuer}/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def userinfo_endpoint(self) -> str:
        return f"{self.issuer}/userinfo"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    def metadata(self) -> dict[str, Any]:
        """OpenID Provider Metadata (OIDC Discovery §3); ``issuer`` is exactly ``self.issuer``."""
        metadata: dict[str, Any] = {
            "issuer": self.issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "userinfo_endpoint": self.userinfo_endpoint,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": list(self.token_handler.grants),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": list(scopes.SUPPORTED),
            "claims_supported": CLAIMS_SUPPORTED,
            "authorization_response_iss_parameter_supported": True,
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
        }
        if TOKEN_EXCHANGE in self.token_handler.grants:  # draft-ietf-oauth-identity-chaining: what it exchanges to
            metadata["identity_chaining_requested_token_types_supported"] = [ID_JAG]
        return metadata

    def jwks(self, session: Session) -> dict[str, Any]:
        """Published public keys: the active one, the next one, and retired ones still in their grace."""
        return self.keyring.jwks(session, self.key_grace)

    def begin_authorization(self, params: ProviderParams) -> AuthorizationRequest:
        """Validate an authorization request that should show the login form."""
        return self.authorizer.begin(params)

    def login(self, params: ProviderParams) -> AuthorizationResponse:
        """Handle the posted login form: a code redirect, or ``LoginFailed``."""
        return self.authorizer.login(params)

    def authorization_error(self, error: OAuthError) -> AuthorizationResponse:
        """The redirect for an error whose ``redirectable`` is True."""
        return self.authorizer.error_response(error)

    def token(self, params: ProviderParams, authorization: str | None, session: Session) -> dict[str, Any]:
        """The token endpoint (RFC 6749 §3.2); ``authorization`` is the raw Authorization header."""
        return self.token_handler.handle(params, authorization, session)

    def register_grant(self, grant_type: str, handler: GrantHandler) -> None:
        """Add a grant type (e.g. token exchange); it runs after client authentication."""
        self.token_handler.grants[grant_type] = handler

    def userinfo(self, unverified_token: str, session: Session) -> dict[str, Any]:
        """OIDC Core §5.3: claims of the user an access token of ours was issued for."""
        claims = verify_own_jwt(unverified_token, typ=ACCESS_TOKEN_TYP, jwks=self.jwks(session),
                                issuer=self.issuer, audience=self.userinfo_endpoint,
                                required=ACCESS_TOKEN_CLAIMS, now=self.clock())
        scope = tuple(str(claims["scope"]).split())
        if scopes.OPENID not in scope:
            raise InsufficientScope("the access token was not issued for openid")  # OIDC Core §5.3
        user = self.directory.user(str(claims["sub"]))
        if user is None:
            raise InvalidToken("the user no longer exists")
        return user_claims(user, scope)
