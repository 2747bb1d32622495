"""Client authentication at the token side (RFC 6749 §2.3), on the hot lane, by ``broker.oauth.client_auth``'s
rules: the request presents exactly one method, the endpoint must take it, its credential must verify, and
the client must have registered it. Methods: none, client_secret_basic, client_secret_post and
private_key_jwt (RFC 7523 §2.2), for stored clients and for clients named by a metadata-document URL.

A client is looked up once per request. What needs the network (a metadata document, the keys at a client's
``jwks_uri``) was fetched before the transaction (``TokenEngine.prefetch``); when an assertion's signature
fails under keys from a ``jwks_uri``, ``RefetchKeys`` leaves the transaction so the engine can fetch them
again (rate limited) and run the request once more.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import unquote

from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from broker import audit
from broker.oauth import cimd, client_auth, secrets
from broker.oauth.client_keys import InvalidKeys, key_set
from broker.oauth.clients import registered_methods
from broker.oauth.dates import instant
from broker.oauth.engine.context import Grant, VerifiedClient
from broker.oauth.errors import InvalidClientError, describe
from broker.params import JsonError, load_json
from broker.storage import clients as repo
from broker.storage import grants as grant_repo
from broker.storage.clients import ClientRow
from broker.storage.enums import ClientKind, ClientStatus

ASSERTION_LIFETIME_CAP = dt.timedelta(minutes=10)
UNKNOWN = "The client does not exist on this server."

Lookup = Callable[[str], Awaitable[ClientRow | None]]


class RefetchKeys(Exception):
    """An assertion's signature failed under the cached keys of ``uri``: fetch them again, then retry."""

    def __init__(self, uri: str):
        super().__init__(uri)
        self.uri = uri


async def authenticate(grant: Grant, methods: Sequence[str]) -> VerifiedClient:
    """The client this request authenticates as, with the one method it presented; ``InvalidClientError``
    (``invalid_request`` for two methods in one request) otherwise."""
    basic = client_auth.strict_basic_header({"authorization": grant.call.authorization or ""})
    presented = presented_method(grant)
    client_auth.check_accepted(presented, methods)
    found: dict[str, ClientRow | None] = {}

    async def lookup(client_id: str) -> ClientRow | None:
        if not isinstance(client_id, str) or "\x00" in client_id:  # e.g. from Basic auth; never a client id
            return None
        if client_id not in found:
            found[client_id] = await find(grant, client_id)
        return found[client_id]

    try:
        row = await _METHODS[presented](grant, lookup)
    except InvalidClientError as exc:
        if basic:  # RFC 6749 §5.2: the client tried the Authorization header, so 401 whatever failed
            exc.status_code = 401
        if presented != client_auth.PRIVATE_KEY_JWT:
            raise
        raise client_auth.credential_refused(presented, exc.description) from None
    if row is None:
        raise client_auth.credential_refused(presented)
    client_auth.check_registered(presented, registered_methods(row))
    return VerifiedClient(row, presented)


def presented_method(grant: Grant) -> str:
    params = grant.params
    form = {name: params.get(name) or "" for name in ("client_secret", "client_assertion", "client_assertion_type")}
    return client_auth.presented_method(client_auth.presented_by({"authorization": grant.call.authorization or ""},
                                                                 form))


async def find(grant: Grant, client_id: str) -> ClientRow | None:
    """Who a client_id names, in MCP's order: a stored client, then a metadata-document URL."""
    row = await repo.record_hot(grant.tx, client_id)
    if row is not None and row.kind != ClientKind.CIMD:
        return row
    if not cimd.is_client_id_url(client_id):
        return None
    try:
        return await _document_client(grant, client_id, row)
    except cimd.CimdError as exc:  # a document that cannot be fetched or verified is invalid_client
        raise InvalidClientError(description=describe(f"client metadata document: {exc.detail}")) from None


async def _document_client(grant: Grant, client_id: str, row: ClientRow | None) -> ClientRow:
    """``CimdClients.resolve`` with the document fetched before the transaction (see its contract)."""
    documents = grant.engine.cimd
    if documents is None:
        raise cimd.CimdError("this server does not accept client metadata documents (URL client ids)")
    documents.check(client_id)
    if row is not None and row.status != ClientStatus.ACTIVE:
        return row  # disabled or held by an administrator: refused by the caller, whatever the document says
    fetched = grant.call.fetched.documents.get(client_id)
    if isinstance(fetched, cimd.CimdError):
        raise fetched
    metadata = fetched or documents.cache.get(client_id)
    if metadata is None:  # its cache entry went stale since the request began
        raise cimd.CimdError("its metadata document could not be fetched: try again")
    if row is not None and fetched is None:
        return row  # an unchanged document, known from the cache
    return await _store(grant, metadata, row)


async def _store(grant: Grant, metadata: cimd.ClientMetadata, row: ClientRow | None) -> ClientRow:
    """Insert or update the row from a freshly verified document (status and admin flags untouched)."""
    values, now = metadata.row_values(), grant.now
    if row is None:
        if await repo.insert_if_absent_hot(grant.tx, _new_row(metadata.client_id, values, now)):
            await _audit(grant, "client.cimd_added", metadata, sorted(values))
        row = await repo.record_hot(grant.tx, metadata.client_id)  # ours, or the one another instance stored
        assert row is not None
        if row.kind != ClientKind.CIMD or row.status != ClientStatus.ACTIVE:
            return row
    changed = {name: value for name, value in values.items() if getattr(row, name) != value}
    if changed:
        await repo.update_hot(grant.tx, row.id, changed, now)
        await _audit(grant, "client.cimd_updated", metadata, sorted(changed))
        row = row._replace(**changed)
    return row


def _new_row(client_id: str, values: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    return {"id": client_id, "kind": ClientKind.CIMD, "status": ClientStatus.ACTIVE, "secret_hash": None,
            "extra_auth_methods": [],
            "trusted": False, "scopes": [], "may_introspect": False, "resource_servers": [],
            "dpop_bound_access_tokens": False, "registered_from": None,
            "created_at": now,
            "updated_at": now,
            **{("metadata" if name == "metadata_" else name): value for name, value in values.items()}}


async def _audit(grant: Grant, event_type: str, metadata: cimd.ClientMetadata, fields: list[str]) -> None:
    """A client appearing, or its document changing (redirect URIs, keys), is worth a record."""
    await audit.record_hot(grant.tx, event_type, actor=metadata.client_id, client_id=metadata.client_id,
                           data={"fields": [f.rstrip("_") for f in fields], "client_name": metadata.client_name,
                                 "redirect_uris": list(metadata.redirect_uris),
                                 "token_endpoint_auth_method": metadata.token_endpoint_auth_method})


# ---------------------------------------------------------------- the methods


async def _none(grant: Grant, lookup: Lookup) -> ClientRow | None:
    client_id = grant.params.get("client_id")
    if client_id and not grant.params.get("client_secret"):
        return await _known(lookup, client_id, 400)
    return None


async def _basic(grant: Grant, lookup: Lookup) -> ClientRow | None:
    client_id, secret = basic_credentials(grant.call.authorization)
    if client_id and secret:
        row = await _known(lookup, client_id, 401)
        if secrets.matches(secret, _secret_of(row, client_auth.CLIENT_SECRET_BASIC)):
            return row
    return None


async def _post(grant: Grant, lookup: Lookup) -> ClientRow | None:
    client_id, secret = grant.params.get("client_id"), grant.params.get("client_secret")
    if client_id and secret:
        row = await _known(lookup, client_id, 400)
        if secrets.matches(secret, _secret_of(row, client_auth.CLIENT_SECRET_POST)):
            return row
    return None


def _secret_of(row: ClientRow, presented: str) -> str | None:
    """The client's secret digest; a client without one (public, private_key_jwt) is told which method it has."""
    if row.secret_hash is None:
        client_auth.check_registered(presented, registered_methods(row))
    return row.secret_hash


async def _known(lookup: Lookup, client_id: str, status: int) -> ClientRow:
    row = await lookup(client_id)
    if row is None:
        raise InvalidClientError(status_code=status, description=UNKNOWN)
    return row


def basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    """(client_id, secret) of ``Basic base64(id:secret)`` (RFC 6749 §2.3.1), each form-urldecoded; (None, None)
    for anything that is not readable Basic credentials."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None, None
    try:
        decoded = base64.b64decode(token.strip()).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None, None
    if ":" in decoded:
        client_id, secret = decoded.split(":", 1)
        return unquote(client_id), unquote(secret)
    return decoded, None


async def _private_key_jwt(grant: Grant, lookup: Lookup) -> ClientRow | None:
    """RFC 7523 §2.2 and §3: a JWT the client signed with a key it registered; its ``jti`` used once."""
    if grant.params.get("client_assertion_type") != client_auth.ASSERTION_TYPE:
        return None
    assertion = grant.params.get("client_assertion")
    if not assertion:
        return None
    row = await lookup(assertion_subject(assertion))
    if row is None:
        raise InvalidClientError(description=UNKNOWN)
    claims = _verified(grant, assertion, row)
    key = hashlib.sha256(f"client-assertion\0{claims['iss']}\0{claims['jti']}".encode()).hexdigest()
    expiry = instant(claims["exp"])
    if expiry is None or expiry > dt.datetime.max.replace(tzinfo=dt.UTC) - ASSERTION_LIFETIME_CAP:
        raise InvalidClientError(description="client authentication failed: exp is past any date")
    expires = expiry + ASSERTION_LIFETIME_CAP
    if not await grant_repo.first_use_of_jti_hot(grant.tx, key, "client-assertion", expires):
        raise InvalidClientError(description="JWT ID is used before.")
    return row


def assertion_subject(assertion: str) -> str:
    """The unverified ``sub`` of a client assertion: who it claims to be, to find the key that must verify it."""
    try:
        payload = jws.extract_compact(assertion.encode()).payload
    except (JoseError, ValueError):
        raise InvalidClientError(description="Invalid JWT assertion.") from None
    try:
        claims = load_json(payload)
    except JsonError:
        raise InvalidClientError(description="Invalid JWT payload.") from None
    if not isinstance(claims, dict):
        raise InvalidClientError(description="Invalid JWT payload.")
    if "sub" not in claims:
        raise InvalidClientError(description="Missing claim: 'sub'")
    if not isinstance(claims["sub"], str):
        raise InvalidClientError(description="Invalid claim: 'sub'")
    return claims["sub"]


def _verified(grant: Grant, assertion: str, row: ClientRow) -> dict[str, Any]:
    issuer = grant.engine.issuer
    try:
        # OIDC Registration §2: a token_endpoint_auth_signing_alg the client registered MUST be the one it signs with.
        token = jwt.decode(assertion, _keys(grant, row), algorithms=client_auth.assertion_algorithms(row.metadata_))
        registry = jwt.JWTClaimsRegistry(leeway=grant.engine.settings.tokens.clock_skew, iss={"essential": True},
                                         sub={"essential": True}, exp={"essential": True},
                                         aud={"essential": True, "values": [issuer, f"{issuer}/token"]})
        registry.validate(token.claims)  # RFC 7523 §3 item 3: the audience is us or our token endpoint
    except (BadSignatureError, InvalidKeyIdError):
        if row.jwks_uri and row.jwks_uri not in grant.call.fetched.refetched:
            raise RefetchKeys(row.jwks_uri) from None
        raise InvalidClientError() from None  # "the client assertion does not verify"
    except JoseError as exc:
        raise InvalidClientError(description=describe(exc.description)) from None
    except ValueError:
        raise InvalidClientError(description="Invalid JWT assertion.") from None
    claims = token.claims
    if claims["sub"] != claims["iss"]:
        raise InvalidClientError(description="Issuer and Subject MUST match.")
    if "jti" not in claims:
        raise InvalidClientError(description="Missing JWT ID.")
    return claims


def _keys(grant: Grant, row: ClientRow) -> KeySet:
    """The client's public keys: registered inline, or those at its ``jwks_uri`` fetched before the transaction."""
    if not row.jwks_uri:
        return key_set(row.jwks or {"keys": []})
    fetched = grant.call.fetched.client_keys.get(row.jwks_uri)
    if isinstance(fetched, InvalidKeys):
        raise InvalidClientError(description=describe(str(fetched)))
    if fetched is None:
        raise InvalidClientError(description="the client's keys could not be fetched: try again")
    return key_set(fetched)


_METHODS: dict[str, Callable[[Grant, Lookup], Awaitable[ClientRow | None]]] = {
    client_auth.NONE: _none, client_auth.CLIENT_SECRET_BASIC: _basic, client_auth.CLIENT_SECRET_POST: _post,
    client_auth.PRIVATE_KEY_JWT: _private_key_jwt}
