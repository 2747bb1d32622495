"""The connector interface every upstream identity provider implements, and how connectors are built.

Connector types are registered in a map at the composition root (``broker.app``), not here::

    CONNECTOR_TYPES = {"oidc": OidcConnector, "test": OidcConnector}
    connectors = build_connectors(settings.idps, CONNECTOR_TYPES, http=http,
                                  redirect_uri=lambda idp: f"{settings.issuer}/callback/{idp.id}")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

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
