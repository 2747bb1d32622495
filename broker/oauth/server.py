"""The token-side authorization server: authlib's dispatcher with the broker's grants and endpoints.

``BrokerAuthorizationServer`` knows no web framework: ``broker.web`` builds an ``HttpRequest``,
calls ``create_token_response`` / ``create_endpoint_response``, and renders the returned
(status, body, headers).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationServer
from authlib.oauth2.rfc6749.authenticate_client import ClientAuthentication
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc.jwk import KeySet

from broker.config import Settings
from broker.keys.ring import KeyRing
from broker.oauth.cimd import CimdError
from broker.oauth.clients import ClientDirectory, ClientView
from broker.oauth.errors import InvalidClientError, describe
from broker.oauth.grants import AuthorizationCodeGrant, ClientCredentialsGrant, RefreshTokenGrant
from broker.oauth.id_tokens import IdTokens
from broker.oauth.introspection import BrokerIntrospectionEndpoint, BrokerRevocationEndpoint, VerifiedAccessTokens
from broker.oauth.jwt_bearer import JwtBearerGrant
from broker.oauth.request import BrokerJsonRequest, BrokerRequest, HttpRequest
from broker.oauth.token_exchange import TokenExchangeGrant
from broker.oauth.tokens import AccessTokens, RefreshTokens
from broker.policy import PolicySource
from broker.storage import grants as grant_repo

ASSERTION_LIFETIME_CAP = dt.timedelta(minutes=10)


class PrivateKeyJwt(JWTBearerClientAssertion):
    """RFC 7523 §2.2 client authentication; ``jti`` single use across instances (database)."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: BrokerAuthorizationServer, request: Any):
        super().__init__(validate_jti=True, leeway=server.settings.tokens.clock_skew)
        self.server = server
        self.request = request

    def get_audiences(self) -> list[str]:
        return [self.server.issuer, f"{self.server.issuer}/token"]  # RFC 7523 §3 item 3

    def validate_jti(self, claims: Any, jti: str) -> bool:
        key = hashlib.sha256(f"client-assertion\0{claims['iss']}\0{jti}".encode()).hexdigest()
        expires = dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC) + ASSERTION_LIFETIME_CAP
        return grant_repo.first_use_of_jti(self.request.db, key, "client-assertion", expires)

    def resolve_client_public_key(self, client: ClientView) -> Any:
        return KeySet.import_key_set(client.row.jwks or {"keys": []})


class BrokerAuthorizationServer(AuthorizationServer):
    def __init__(self, settings: Settings, keyring: KeyRing, policy: PolicySource,
                 clients: ClientDirectory | None = None):
        super().__init__(scopes_supported=None)
        self.settings = settings
        self.clients = clients or ClientDirectory()
        self.issuer = settings.issuer
        self.keyring = keyring
        self.policy = policy
        self.jwks_grace = dt.timedelta(seconds=settings.longest_jwt_lifetime)
        self.access_tokens = AccessTokens(settings, keyring)
        self.refresh_tokens = RefreshTokens(settings)
        self.id_tokens = IdTokens(settings, keyring)
        self.verified_access_tokens = VerifiedAccessTokens()  # introspection: signatures checked once
        # Enterprise-Managed Authorization: redeem ID-JAGs from trusted IdPs; issue them for other servers.
        self.assertion_issuers = {t.issuer: t for t in settings.id_jag.trusted_issuers}
        self.assertion_audiences = {a.issuer: a for a in settings.id_jag.audiences if a.issuer != self.issuer}
        for grant in (AuthorizationCodeGrant, RefreshTokenGrant, ClientCredentialsGrant):
            self.register_grant(grant)
        if self.assertion_issuers:
            self.register_grant(JwtBearerGrant)
        if self.assertion_audiences:
            self.register_grant(TokenExchangeGrant)
        self.register_endpoint(BrokerRevocationEndpoint)
        self.register_endpoint(BrokerIntrospectionEndpoint)

    # -- authlib's framework hooks, implemented without a framework

    def create_oauth2_request(self, request: HttpRequest | BrokerRequest) -> BrokerRequest:
        if isinstance(request, BrokerRequest):
            return request
        oauth_request = BrokerRequest(request)
        oauth_request.server_ref = self
        return oauth_request

    def create_json_request(self, request: HttpRequest) -> BrokerJsonRequest:
        return BrokerJsonRequest(request)

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, list(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def query_client(self, client_id: str) -> ClientView | None:
        raise RuntimeError("clients are looked up through the request's session")  # see authenticate_client

    def authenticate_client(self, request: BrokerRequest, methods: list[str], endpoint: str = "token") -> Any:
        """Client authentication (RFC 6749 §2.3) with the request's own database session.

        authlib may ask for the same client once per method it tries: one lookup (one CIMD fetch) per request.
        """
        found: dict[str, ClientView | None] = {}

        def query(client_id: str) -> ClientView | None:
            if not isinstance(client_id, str) or "\x00" in client_id:  # e.g. from Basic auth; never a client id
                return None
            if client_id not in found:
                found[client_id] = self._find_client(request, client_id)
            return found[client_id]

        auth = ClientAuthentication(query)
        auth.register(PrivateKeyJwt.CLIENT_AUTH_METHOD, PrivateKeyJwt(self, request))
        return auth(request, methods, endpoint)

    def _find_client(self, request: BrokerRequest, client_id: str) -> ClientView | None:
        try:
            row = self.clients.find(request.db, client_id)
        except CimdError as exc:  # CIMD: a document that cannot be fetched or verified is invalid_client
            raise InvalidClientError(description=describe(f"client metadata document: {exc.detail}")) from None
        return ClientView(row) if row is not None else None
