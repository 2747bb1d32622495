"""OAuth clients as authlib sees them, how operators register them, and who a client_id names.

``ClientView`` adapts a stored client (``ClientRow``) to authlib's ``ClientMixin``; it is the only place
that answers "may this client do that". Secrets are generated here and stored as digests.
``ClientDirectory`` is the one lookup every endpoint uses: stored clients, and https URL
client ids through their Client ID Metadata Documents (``broker.oauth.cimd``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy.orm import Session

from broker import audit
from broker.oauth import cimd, client_keys, redirects, secrets
from broker.oauth.client_auth import ALL_METHODS, PRIVATE_KEY_JWT, SECRET_METHODS
from broker.oauth.client_auth import NONE as PUBLIC_METHOD
from broker.storage import clients as repo
from broker.storage.clients import ClientRow
from broker.storage.models import utcnow

AUTH_METHODS = ALL_METHODS
USER_GRANTS = ("authorization_code", "refresh_token")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"  # redeem ID-JAGs (oauth.engine.assertions)
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # get ID-JAGs (oauth.engine.assertions)
CONFIDENTIAL_GRANTS = ("client_credentials", JWT_BEARER, TOKEN_EXCHANGE)


def preregistered_grants(*, redirect_uris: Sequence[str], client_credentials: bool = False, id_jag: bool = False,
                         token_exchange: bool = False, introspect: bool = False,
                         confidential: bool = False) -> list[str]:
    """The grant types an operator's choices add up to (CLI and admin API); ``ValueError`` when they clash."""
    grants = list(USER_GRANTS) if redirect_uris else []
    for wanted, grant in ((client_credentials, "client_credentials"), (id_jag, JWT_BEARER),
                          (token_exchange, TOKEN_EXCHANGE)):
        if wanted:
            grants.append(grant)
    if not grants and not introspect:
        raise ValueError("give redirect URIs (users sign in), client credentials, ID-JAG redemption or "
                         "introspection")
    if (set(grants) & set(CONFIDENTIAL_GRANTS) or introspect) and not confidential:
        raise ValueError("client credentials, ID-JAGs, token exchange and introspection need a confidential client")
    return grants


class ClientView(ClientMixin):
    """``row``: the stored client, as ``ClientDirectory.find`` returns it."""

    def __init__(self, row: ClientRow):
        self.row = row

    @property
    def client_id(self) -> str:
        return self.row.id

    @property
    def is_public(self) -> bool:
        return self.row.token_endpoint_auth_method == PUBLIC_METHOD

    @property
    def auth_methods(self) -> tuple[str, ...]:
        """Every method the client registered (``broker.oauth.client_auth`` enforces them)."""
        return registered_methods(self.row)

    @property
    def active(self) -> bool:
        return self.row.status == "active"

    def get_client_id(self) -> str:
        return self.row.id

    def get_default_redirect_uri(self) -> str | None:
        return None  # OAuth 2.1: the broker always requires redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return scope  # scopes are decided per MCP server by policy, not per client

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirects.matches(self.row.redirect_uris, redirect_uri)

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.matches(client_secret, self.row.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # The registered methods, at every endpoint (RFC 7591 §2: token_endpoint_auth_method).
        return method in self.auth_methods

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.row.grant_types


class ClientDirectory:
    """Who a client_id names, in MCP's order: a stored (pre-registered or DCR) client, then a CIMD URL."""

    def __init__(self, cimd_clients: cimd.CimdClients | None = None,
                 key_sets: client_keys.ClientKeySets | None = None):
        self.cimd = cimd_clients
        self.key_sets = key_sets or client_keys.ClientKeySets(None)  # private_key_jwt clients' jwks_uri

    def find(self, session: Session, client_id: str) -> ClientRow | None:
        """The client, or None if unknown; ``cimd.CimdError`` when a client_id URL cannot be used."""
        found = repo.get(session, client_id)
        if found is not None and found.kind != "cimd":
            return found
        if not cimd.is_client_id_url(client_id):
            return None
        if self.cimd is None:
            raise cimd.CimdError("this server does not accept client metadata documents (URL client ids)")
        return self.cimd.resolve(session, client_id, found)  # active only with a document verified in its cache life


@dataclass(frozen=True)
class NewClient:
    row: ClientRow
    secret: str | None  # shown once, never stored


@dataclass(frozen=True)
class AuthSetup:
    """How a client authenticates, checked: its methods (the first is ``token_endpoint_auth_method``) and keys."""

    methods: tuple[str, ...]
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None

    @property
    def needs_secret(self) -> bool:
        return any(method in SECRET_METHODS for method in self.methods)


PUBLIC_AUTH = AuthSetup((PUBLIC_METHOD,))
BASIC_AUTH = AuthSetup(("client_secret_basic",))


def auth_setup(methods: Sequence[str], *, jwks: Any = None, jwks_uri: Any = None) -> AuthSetup:
    """The checked ``AuthSetup``; ``ValueError`` saying what is wrong."""
    methods = tuple(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in AUTH_METHODS]
    if not methods or unknown:
        raise ValueError(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}")
    if PUBLIC_METHOD in methods and len(methods) > 1:
        raise ValueError("none (a public client) cannot be combined with other authentication methods")
    if PRIVATE_KEY_JWT not in methods:
        if jwks is not None or jwks_uri is not None:
            raise ValueError("jwks and jwks_uri are for private_key_jwt clients only")
        return AuthSetup(methods)
    if (jwks is None) == (jwks_uri is None):  # RFC 7591 §2: not both
        raise ValueError("private_key_jwt needs the client's public keys: give jwks or jwks_uri (one of them)")
    try:
        if jwks is not None:
            return AuthSetup(methods, jwks=client_keys.public_jwks(jwks))
        return AuthSetup(methods, jwks_uri=client_keys.check_jwks_uri(jwks_uri))
    except client_keys.InvalidKeys as exc:
        raise ValueError(str(exc)) from None


def operator_auth(methods: Sequence[str], *, confidential: bool | None, jwks: Any = None,
                  jwks_uri: Any = None) -> AuthSetup:
    """What an operator asked for (CLI, admin API, console): no methods means ``client_secret_basic`` for a
    confidential client and ``none`` otherwise; ``ValueError`` when the choices contradict each other."""
    if not methods:
        methods = ("private_key_jwt",) if jwks is not None or jwks_uri is not None else (
            ("client_secret_basic",) if confidential else (PUBLIC_METHOD,))
    setup = auth_setup(methods, jwks=jwks, jwks_uri=jwks_uri)
    public = setup.methods == (PUBLIC_METHOD,)
    if confidential is not None and confidential == public:
        raise ValueError("a public client authenticates with none only; a confidential client with "
                         "client_secret_basic, client_secret_post or private_key_jwt")
    return setup


def registered_methods(row: ClientRow) -> tuple[str, ...]:
    """Every method a stored client registered: ``token_endpoint_auth_method`` first."""
    return (row.token_endpoint_auth_method, *(m for m in row.extra_auth_methods or ()
                                              if m != row.token_endpoint_auth_method))


def register(session: Session, *, client_id: str | None = None, name: str, kind: str,
             redirect_uris: Sequence[str] = (), auth: AuthSetup = PUBLIC_AUTH,
             grant_types: Sequence[str] = USER_GRANTS, trusted: bool = False, scopes: Sequence[str] = (),
             may_introspect: bool = False, status: str = "active", registered_from: str | None = None,
             metadata: dict[str, Any] | None = None, secret: str | None = None, actor: str = "system",
             resource_servers: Sequence[str] = (), dpop_bound_access_tokens: bool = False) -> NewClient:
    """Create a client; raise ``ValueError`` with a clear message for any invalid field.

    ``resource_servers``: the MCP server ids whose tokens an introspecting client may learn about.
    ``dpop_bound_access_tokens``: RFC 9449 §5.2, the token endpoint issues it DPoP-bound tokens only.
    """
    _check_redirects(redirect_uris, grant_types)
    if resource_servers and not may_introspect:
        raise ValueError("resource servers are for a client that may introspect (--introspect)")
    if auth.methods == (PUBLIC_METHOD,) and set(grant_types) & set(CONFIDENTIAL_GRANTS):
        raise ValueError("client_credentials, jwt-bearer and token-exchange need an authenticated client")
    if client_id is not None and kind != "cimd" and cimd.is_client_id_url(client_id):
        raise ValueError("a client id that is an https URL names a client metadata document; choose another id")
    secret = (secret or secrets.new_token()) if auth.needs_secret else None
    client_id = client_id or _new_client_id()
    if repo.get(session, client_id) is not None:
        raise ValueError(f"client id {client_id!r} is taken")
    now = utcnow()
    row = ClientRow(id=client_id, name=name, kind=kind, status=status, token_endpoint_auth_method=auth.methods[0],
                    extra_auth_methods=list(auth.methods[1:]), secret_hash=secrets.digest(secret) if secret else None,
                    redirect_uris=list(redirect_uris), grant_types=list(grant_types), trusted=trusted,
                    scopes=list(scopes), may_introspect=may_introspect, registered_from=registered_from,
                    jwks=auth.jwks, jwks_uri=auth.jwks_uri, metadata_=metadata or {},
                    resource_servers=sorted(set(resource_servers)), dpop_bound_access_tokens=dpop_bound_access_tokens,
                    created_at=now, updated_at=now)
    repo.add(session, row)
    audit.record(session, "client.registered", actor=actor, client_id=row.id,
                 data={"kind": kind, "name": name, "status": status, "auth_method": auth.methods[0],
                       "auth_methods": list(auth.methods), "jwks_uri": auth.jwks_uri,
                       "redirect_uris": list(redirect_uris), "grant_types": list(grant_types), "trusted": trusted,
                       "scopes": list(scopes), "may_introspect": may_introspect, "registered_from": registered_from,
                       "resource_servers": sorted(set(resource_servers)),
                       "dpop_bound_access_tokens": dpop_bound_access_tokens})
    return NewClient(row, secret)


def _check_redirects(redirect_uris: Sequence[str], grant_types: Sequence[str]) -> None:
    for uri in redirect_uris:
        try:
            redirects.validate_for_registration(uri)
        except redirects.InvalidRedirectUri as exc:
            raise ValueError(f"redirect URI {uri!r}: {exc}") from None
    if "authorization_code" in grant_types and not redirect_uris:
        raise ValueError("the authorization_code grant needs at least one redirect URI")


def _new_client_id() -> str:
    # Never an https URL: those are Client ID Metadata Document URLs (draft-ietf-oauth-client-id-metadata-document).
    return "mcp_" + secrets.new_token()[:24]
