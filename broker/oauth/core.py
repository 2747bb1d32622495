"""The protocol core as one object the web layer holds: every OAuth endpoint's logic, no HTTP. The token side
is its ``engine`` (``broker.oauth.engine``); the sign-in is ``login``; registration is on authlib's endpoint.

Built by the composition root (``broker.app``) with the implementations it chose (policy,
connectors); ``broker.web`` calls these methods with plain values and renders the results.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from typing import Any

import httpx
from authlib.oauth2.rfc6749.errors import OAuth2Error
from sqlalchemy.orm import Session

from broker.config import Settings
from broker.federation.base import Connector
from broker.federation.errors import UpstreamError
from broker.federation.http import upstream_client
from broker.keys.crypto import Encryptor
from broker.keys.ring import KeyRing
from broker.oauth import authorize, metadata, selection
from broker.oauth.cimd import CimdClients, MetadataFetcher
from broker.oauth.cimd import cache_lifetime as cimd_cache_lifetime
from broker.oauth.client_keys import ClientKeySets
from broker.oauth.clients import ClientDirectory
from broker.oauth.engine import TokenEngine
from broker.oauth.errors import AccessDeniedError, AuthorizationPageError, TemporarilyUnavailableError
from broker.oauth.id_jag import AssertionKeys
from broker.oauth.login import LoginFlow
from broker.oauth.params import Params
from broker.oauth.registration import BrokerRegistrationEndpoint
from broker.oauth.request import BrokerJsonRequest, HttpRequest
from broker.policy import PolicySource
from broker.registry import servers

Response = tuple[int, Any, list[tuple[str, str]]]


class OAuthCore:
    def __init__(self, settings: Settings, keyring: KeyRing, encryptor: Encryptor, policy: PolicySource,
                 connectors: Mapping[str, Connector], csrf_key: bytes, client_metadata: MetadataFetcher | None = None,
                 http: httpx.AsyncClient | None = None, *, dpop_nonce_key: bytes):
        self.settings = settings
        self.issuer = settings.issuer
        self.policy = policy
        self.connectors = dict(connectors)
        key_sets = ClientKeySets(client_metadata, lifetime=functools.partial(
            cimd_cache_lifetime, cap=settings.cimd.max_cache_seconds))  # jwks_uri: the same SSRF guard as CIMD
        self.clients = ClientDirectory(CimdClients(settings.cimd, client_metadata), key_sets)  # CIMD needs a fetcher
        self.login = LoginFlow(settings, encryptor, policy, csrf_key)
        self.assertion_keys = AssertionKeys(settings.id_jag.trusted_issuers, http or upstream_client())
        self.registration = BrokerRegistrationEndpoint(settings.registration.require_approval,
                                                       settings.registration.max_per_hour_per_address)
        self.engine = TokenEngine(settings, keyring, policy, self.clients, self.assertion_keys, dpop_nonce_key)

    def metadata(self, session: Session) -> dict[str, Any]:
        return metadata.authorization_server_metadata(self.settings, servers.all_scopes(session))

    def validate_authorization(self, session: Session, params: Params) -> authorize.AuthorizationRequest:
        return authorize.validate(session, params, self.issuer, self.clients)

    def automatic_idp(self, request: authorize.AuthorizationRequest) -> str | None:
        """The IdP this user signs in with when it needs no asking (one IdP, or ``login_hint``'s domain)."""
        if not self.connectors:
            raise AuthorizationPageError("No identity provider", "No identity provider is configured.", 503)
        return selection.automatic(self._idps(), request.login_hint)

    def idp_choices(self) -> list[selection.Choice]:
        return selection.choices(self._idps())

    def idp_for_email(self, email: str | None) -> str | None:
        return selection.by_email(self._idps(), email)

    def _idps(self) -> list[Any]:
        return [idp for idp in self.settings.idps if idp.id in self.connectors]

    def connector(self, idp_id: str) -> Connector:
        connector = self.connectors.get(idp_id)
        if connector is None:
            raise AuthorizationPageError("Unknown identity provider", "This sign-in response names an identity "
                                         "provider this broker does not use.", 404)
        return connector

    @staticmethod
    def upstream_failure(exc: UpstreamError) -> OAuth2Error:
        """What the client hears when the IdP fails: RFC 6749 §4.1.2.1 codes, our description."""
        if exc.client_error == "temporarily_unavailable":
            return TemporarilyUnavailableError("the identity provider is unavailable; try again later")
        return AccessDeniedError("sign-in at the identity provider failed")

    def register(self, http: HttpRequest) -> Response:
        request = BrokerJsonRequest(http)
        try:
            return self.registration.create_registration_response(request)
        except OAuth2Error as error:
            status, body, headers = error()
            return status, body, [*headers, ("Cache-Control", "no-store")]

    @staticmethod
    def now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)
