"""The connector interface every upstream identity provider implements, the optional capabilities a
connector may add, and how connectors are built.

Capabilities are small protocols of their own (``RefreshConnector``, ``RevocationConnector``): the
composition root sorts the built connectors by what they can do (``Capable``), so no caller asks an object
whether it happens to have a method. Connector types are registered in a map at the composition root
(``broker.app``), not here::

    CONNECTOR_TYPES = {"oidc": OidcConnector, "test": OidcConnector}
    connectors = build_connectors(settings.idps, CONNECTOR_TYPES, http=http,
                                  redirect_uri=lambda idp: f"{settings.issuer}/callback/{idp.id}")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, Self, runtime_checkable

import httpx

from broker.config import IdpSettings
from broker.federation.identity import Identity


class Connector(Protocol):
    """One upstream identity provider, seen from the broker's ``/authorize`` and callback.

    Contract (what every implementation guarantees):

    - ``authorization_url`` sends only the broker's own request: ``response_type=code``, the
      broker's ``client_id`` and ``redirect_uri``, configured scopes, and the ``state``, ``nonce``
      and S256 ``code_challenge`` the broker made for this login. It never forwards the MCP
      client's ``resource``, ``audience`` or any other parameter the client sent.
    - ``check_response_issuer`` runs on the callback's ``iss`` before ``complete`` (mix-up defence).
    - ``complete`` redeems the code and returns an ``Identity`` only after the ID token's
      signature (keys from the IdP's JWKS), ``iss``, ``aud``/``azp``, ``exp``, ``iat``, ``nonce``
      and algorithm have been checked (OIDC Core §3.1.3.7).
    - All three raise nothing but ``broker.federation.errors.UpstreamError`` subclasses for anything
      the IdP does (timeouts, 5xx, bad JSON, wrong keys, OAuth errors, bad tokens).
    - No token, code, secret or verifier is ever logged.
    """

    idp_id: str
    display_name: str

    async def authorization_url(self, *, state: str, nonce: str, code_challenge: str,
                                login_hint: str | None = None) -> str: ...

    async def complete(self, *, code: str, code_verifier: str, nonce: str) -> Identity: ...

    async def check_response_issuer(self, iss: str | None) -> None:
        """RFC 9207 §2.4: raise ``IssuerMismatch`` unless the callback's ``iss`` names this IdP
        (absent is accepted only from an IdP that does not advertise sending it)."""
        ...

    def returning_to(self, redirect_uri: str) -> Self:
        """The same IdP (sharing its caches) sending the browser back to ``redirect_uri`` instead (the admin
        console's own callback)."""
        ...


@runtime_checkable
class RefreshConnector(Connector, Protocol):
    """An IdP whose refresh tokens the broker can redeem: the upstream check at refresh
    (``check_upstream_on_refresh``) asks it whether it still accepts the user."""

    @property
    def asks_consent_for_refresh_token(self) -> bool:
        """Whether sign-ins add ``prompt=consent`` to ``offline_access`` (OIDC Core §11)."""
        ...

    async def refresh_token_obstacle(self) -> str | None:
        """Why this IdP cannot issue the broker refresh tokens (from its discovery document), or None.
        ``UpstreamError`` when that cannot be read."""
        ...

    async def refresh(self, refresh_token: str) -> str | None:
        """RFC 6749 §6 at the IdP: the rotated refresh token (None when it did not rotate it);
        ``UpstreamRejected`` or ``InvalidIdToken`` when the IdP refuses, other ``UpstreamError``s when it
        cannot answer."""
        ...


@runtime_checkable
class RevocationConnector(Connector, Protocol):
    """An IdP the broker can ask to revoke a refresh token it issued (offboarding)."""

    async def revoke_refresh_token(self, refresh_token: str) -> bool:
        """RFC 7009 at the IdP: True once revoked, False when the IdP offers no revocation endpoint;
        ``UpstreamError`` when it refuses or cannot be reached."""
        ...


@dataclass(frozen=True)
class Capable:
    """The configured IdPs' connectors, by what they can do (keyed by IdP id)."""

    connectors: Mapping[str, Connector]
    refreshing: Mapping[str, RefreshConnector]
    revoking: Mapping[str, RevocationConnector]

    @classmethod
    def sort(cls, connectors: Mapping[str, Connector]) -> Capable:
        return cls(connectors, {i: c for i, c in connectors.items() if isinstance(c, RefreshConnector)},
                   {i: c for i, c in connectors.items() if isinstance(c, RevocationConnector)})


class ConnectorFactory(Protocol):
    """A connector class (or function) as registered at the composition root."""

    def __call__(self, settings: IdpSettings, *, redirect_uri: str, http: httpx.AsyncClient) -> Connector: ...


def build_connectors(idps: Sequence[IdpSettings], types: Mapping[str, ConnectorFactory], *,
                     redirect_uri: Callable[[IdpSettings], str], http: httpx.AsyncClient) -> dict[str, Connector]:
    """One connector per configured IdP, keyed by its id; ``ValueError`` for a type with no factory."""
    connectors: dict[str, Connector] = {}
    for idp in idps:
        factory = types.get(idp.type)
        if factory is None:
            raise ValueError(f"idps: no connector for type {idp.type!r} (IdP {idp.id!r})")
        connectors[idp.id] = factory(idp, redirect_uri=redirect_uri(idp), http=http)
    return connectors
