"""The values the token engine works on: a call in, an answer out, and what a grant holds in between."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from authlib.oauth2.rfc6749.errors import OAuth2Error

from broker.oauth.cimd import CimdError, ClientMetadata
from broker.oauth.client_keys import InvalidKeys
from broker.oauth.id_jag import PreparedKey
from broker.oauth.params import Params
from broker.resource.dpop import DpopProof
from broker.storage.clients import ClientRow
from broker.storage.enums import ClientStatus
from broker.storage.hot import Tx

if TYPE_CHECKING:
    from broker.oauth.engine import TokenEngine

Headers = tuple[tuple[str, str], ...]
NO_STORE: Headers = (("cache-control", "no-store"), ("pragma", "no-cache"))  # RFC 6749 §5.1
BASIC_CHALLENGE = 'Basic realm="mcp-auth-broker"'  # RFC 6749 §5.2 invalid_client


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a request needed from the network, fetched before its transaction began (no connection is held
    while a fetch runs): the metadata documents of the client ids it names, an ID-JAG issuer's key."""

    documents: Mapping[str, ClientMetadata | CimdError] = field(default_factory=dict)
    assertion_key: PreparedKey | None = None
    document_clients: tuple[str, ...] = ()  # the metadata-document URLs the request names as its client
    client_keys: Mapping[str, dict[str, Any] | InvalidKeys] = field(default_factory=dict)  # by jwks_uri
    refetched: frozenset[str] = frozenset()  # jwks_uris fetched again after a signature failed


@dataclass(frozen=True, slots=True)
class Call:
    """One request to the token side as plain values."""

    params: Params
    authorization: str | None  # the Authorization header, as sent
    client_ip: str | None
    now: dt.datetime
    fetched: Fetched = Fetched()
    dpop: tuple[str, ...] = ()  # every DPoP header sent (RFC 9449 §4.3: exactly one is allowed); none: a bearer call


@dataclass(frozen=True, slots=True)
class Answer:
    """What the token side answers: a status, a JSON body and the headers that go with them."""

    status: int
    body: dict[str, Any]
    headers: Headers = NO_STORE


@dataclass(frozen=True, slots=True)
class VerifiedClient:
    """A client that authenticated at this request (``method``), as stored."""

    row: ClientRow
    method: str

    @property
    def client_id(self) -> str:
        return self.row.id

    @property
    def active(self) -> bool:
        return self.row.status == ClientStatus.ACTIVE

    def may_use(self, grant_type: str) -> bool:
        return grant_type in self.row.grant_types


@dataclass(slots=True)
class Grant:
    """One grant in progress: the engine, the request's transaction, the call, and its DPoP proof once checked."""

    engine: TokenEngine
    tx: Tx
    call: Call
    proof: DpopProof | None = None
    groups: dict[str, list[str]] = field(default_factory=dict)  # user id -> group names, read with the user

    @property
    def params(self) -> Params:
        return self.call.params

    @property
    def now(self) -> dt.datetime:
        return self.call.now


class Undone(Exception):
    """A refusal that must leave no trace: the transaction rolls back (a bound code stays redeemable), then
    ``error`` is the answer."""

    def __init__(self, error: OAuth2Error):
        super().__init__(error.error)
        self.error = error


def refusal(error: OAuth2Error) -> Answer:
    """An OAuth error as the token side answers it (RFC 6749 §5.2): JSON, never cached; a 401 challenges."""
    body: dict[str, Any] = {"error": error.error}
    if error.description:
        body["error_description"] = error.description
    if error.uri:
        body["error_uri"] = error.uri
    extra = tuple((name.lower(), value) for name, value in error.get_headers()
                  if name.lower() not in ("content-type", "cache-control", "pragma"))
    if error.status_code == 401 and not any(name == "www-authenticate" for name, _ in extra):
        extra += (("www-authenticate", BASIC_CHALLENGE),)
    return Answer(error.status_code, body, NO_STORE + extra)
