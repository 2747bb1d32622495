"""The token-side authorization server: authlib's dispatcher with the broker's grants and endpoints.

``BrokerAuthorizationServer`` knows no web framework: ``broker.web`` builds an ``HttpRequest``,
calls ``create_token_response`` / ``create_endpoint_response``, and renders the returned
(status, body, headers).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationServer
from authlib.oauth2.rfc6749.authenticate_client import (
    authenticate_client_secret_basic,
    authenticate_client_secret_post,
    authenticate_none,
)
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc.errors import BadSignatureError, InvalidKeyIdError
from joserfc.jwk import KeySet

from broker.config import Settings
from broker.keys.ring import KeyRing
from broker.oauth import client_auth
from broker.oauth.cimd import CimdError
from broker.oauth.client_keys import InvalidKeys
from broker.oauth.clients import ClientDirectory, ClientView
from broker.oauth.errors import InvalidClientError, describe
from broker.oauth.grants import AuthorizationCodeGrant, ClientCredentialsGrant, RefreshTokenGrant
from broker.oauth.id_tokens import IdTokens
from broker.oauth.introspection import BrokerIntrospectionEndpoint, BrokerRevocationEndpoint
from broker.oauth.jwt_bearer import JwtBearerGrant
from broker.oauth.request import BrokerJsonRequest, BrokerRequest, HttpRequest
from broker.oauth.token_exchange import TokenExchangeGrant
from broker.oauth.tokens import AccessTokens, RefreshTokens
from broker.oauth.verification import VerifiedAccessTokens
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
        if not client.row.jwks_uri:
            return KeySet.import_key_set(client.row.jwks or {"keys": []})
        try:
            return KeySet.import_key_set(self.server.clients.key_sets.get(client.row.jwks_uri))
        except InvalidKeys as exc:
            raise InvalidClientError(description=describe(str(exc))) from None

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        """The claims; a signature that fails under keys from a ``jwks_uri`` refetches them once (rate limited)."""
        try:
            return super().process_assertion_claims(assertion, resolve_key)
        except InvalidClientError as refused:
            uri = self.request.client.row.jwks_uri
            if not uri or not isinstance(refused.__cause__, BadSignatureError | InvalidKeyIdError):
                raise
            try:
                fresh = self.server.clients.key_sets.refetch(uri)
            except InvalidKeys:
                fresh = None
            if fresh is None:
                raise refused from None
            return super().process_assertion_claims(assertion, KeySet.import_key_set(fresh))

    def authenticate_client(self, client: ClientView) -> ClientView:
        return client  # whether it registered private_key_jwt: BrokerAuthorizationServer.authenticate_client


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

        The request's one method must be one this endpoint takes (``methods``) and, once its credential
        verifies, one the client registered (``broker.oauth.client_auth``). One lookup (one CIMD fetch) per
        request, however often the method asks for the client.
        """
        basic = client_auth.strict_basic_header(request.headers)
        presented = client_auth.presented_method(client_auth.presented_by(request.headers, request.form))
        client_auth.check_accepted(presented, methods)
        found: dict[str, ClientView | None] = {}

        def query(client_id: str) -> ClientView | None:
            if not isinstance(client_id, str) or "\x00" in client_id:  # e.g. from Basic auth; never a client id
                return None
            if client_id not in found:
                found[client_id] = self._find_client(request, client_id)
            return found[client_id]

        try:
            client = self._authenticator(presented, request)(query, request)
        except InvalidClientError as exc:
            if basic:  # RFC 6749 §5.2: the client tried the Authorization header, so 401 whatever failed
                exc.status_code = 401
            if presented != client_auth.PRIVATE_KEY_JWT:
                raise
            raise client_auth.credential_refused(presented, exc.description) from None  # authlib's, often empty
        if client is None:
            raise client_auth.credential_refused(presented)
        client_auth.check_registered(presented, client.auth_methods)
        request.auth_method = presented
        return client

    def _authenticator(self, method: str, request: BrokerRequest) -> Callable[..., ClientView | None]:
        if method == client_auth.PRIVATE_KEY_JWT:
            return PrivateKeyJwt(self, request)
        return {client_auth.NONE: authenticate_none, client_auth.CLIENT_SECRET_BASIC: authenticate_client_secret_basic,
                client_auth.CLIENT_SECRET_POST: authenticate_client_secret_post}[method]

    def _find_client(self, request: BrokerRequest, client_id: str) -> ClientView | None:
        try:
            row = self.clients.find(request.db, client_id)
        except CimdError as exc:  # CIMD: a document that cannot be fetched or verified is invalid_client
            raise InvalidClientError(description=describe(f"client metadata document: {exc.detail}")) from None
        return ClientView(row) if row is not None else None
