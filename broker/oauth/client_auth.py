"""Client authentication methods: which one a request presented, and whether its client may use it.

Plain functions over plain values, so every endpoint that authenticates clients (the token,
revocation and introspection endpoints, the revocation feed) applies the same rules:

- RFC 6749 §2.3: a request uses exactly one authentication method; more than one is refused.
- RFC 7591 §2 ``token_endpoint_auth_method``: a client authenticates only with a method it registered.
  An operator may register several for one client (e.g. ``client_secret_basic`` and
  ``client_secret_post``); dynamically registered and CIMD clients register one.
- RFC 6749 §3.2.1: a confidential client must authenticate; a request carrying only a ``client_id``
  presents the method ``none``, which such a client did not register.

Errors are ``invalid_client`` (RFC 6749 §5.2) and say what the client registered and what the
request used, never listing the method used as if it were missing. A wrong credential is reported
without the client's registered methods (a secret sent for a client that has none is not wrong but
the wrong method, and is reported so).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from broker.oauth.errors import InvalidClientError, InvalidRequest, describe

NONE = "none"
CLIENT_SECRET_BASIC = "client_secret_basic"
CLIENT_SECRET_POST = "client_secret_post"
PRIVATE_KEY_JWT = "private_key_jwt"
SECRET_METHODS = (CLIENT_SECRET_BASIC, CLIENT_SECRET_POST)
CONFIDENTIAL_METHODS = (*SECRET_METHODS, PRIVATE_KEY_JWT)
ALL_METHODS = (NONE, *CONFIDENTIAL_METHODS)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"  # RFC 7523 §2.2
# What a private_key_jwt assertion may be signed with: the metadata's token_endpoint_auth_signing_alg_values_supported.
ASSERTION_ALGORITHMS = ("ES256", "RS256")
SIGNING_ALG = "token_endpoint_auth_signing_alg"  # OpenID Connect Dynamic Client Registration 1.0 §2
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Presented:
    """The client credentials a request carried, unverified: each flag is one method's evidence."""

    basic_header: bool  # Authorization: Basic with a client id and a secret (RFC 6749 §2.3.1)
    secret_param: bool  # client_secret in the body (RFC 6749 §2.3.1, client_secret_post)
    assertion: bool  # client_assertion and client_assertion_type (RFC 7523 §2.2)

    @property
    def methods(self) -> tuple[str, ...]:
        found = ((self.basic_header, CLIENT_SECRET_BASIC), (self.secret_param, CLIENT_SECRET_POST),
                 (self.assertion, PRIVATE_KEY_JWT))
        return tuple(method for present, method in found if present)


def presented_by(headers: Mapping[str, str], form: Mapping[str, str]) -> Presented:
    """What ``headers`` and ``form`` carry."""
    authorization = headers.get("Authorization") or headers.get("authorization")
    return Presented(basic_header=_basic_with_secret(authorization),
                     secret_param=bool(form.get("client_secret")),
                     assertion=bool(form.get("client_assertion") or form.get("client_assertion_type")))


def presented_method(presented: Presented) -> str:
    """The one method the request used (``none``: no credentials); ``invalid_request`` for several."""
    methods = presented.methods
    if len(methods) > 1:  # RFC 6749 §2.3: MUST NOT use more than one authentication method
        raise InvalidRequest(f"the request uses {' and '.join(methods)}; use one client authentication method")
    return methods[0] if methods else NONE


def check_accepted(presented: str, accepted: Collection[str]) -> None:
    """``invalid_client`` unless this endpoint (or grant) takes the method the request used."""
    if presented not in accepted:
        raise _invalid(f"this request needs client authentication with {_listing(accepted)}; "
                       f"the request {_how(presented)}")


def check_registered(presented: str, registered: Collection[str]) -> None:
    """``invalid_client`` unless the client registered the method the request used (its credential verified)."""
    if presented not in registered:
        raise _invalid(f"the client is registered for {_listing(registered)}; the request {_how(presented)}")


def credential_refused(presented: str, detail: str | None = None) -> InvalidClientError:
    """The error for a credential that does not verify (registered methods are not revealed)."""
    what = {CLIENT_SECRET_BASIC: "the client secret (Authorization: Basic) is wrong",
            CLIENT_SECRET_POST: "the client secret (client_secret) is wrong",
            PRIVATE_KEY_JWT: "the client assertion does not verify"}
    return _invalid(f"client authentication failed: {detail or what.get(presented, 'the request names no client')}")


def _invalid(text: str) -> InvalidClientError:
    return InvalidClientError(status_code=401, description=describe(text))


def _how(method: str) -> str:
    return "carried no client credentials" if method == NONE else f"used {method}"


def _listing(methods: Collection[str]) -> str:
    names = [m for m in ALL_METHODS if m in methods]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _basic_with_secret(authorization: str | None) -> bool:
    """An ``Authorization: Basic`` header carrying ``id:secret`` with a secret (an empty one presents nothing)."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return True  # a malformed Basic header is still an attempt at client_secret_basic
    return bool(decoded.partition(":")[2])


def strict_basic_header(headers: Mapping[str, str]) -> bool:
    """Whether the request carries ``Authorization: Basic`` (RFC 6749 §2.3.1); ``InvalidClientError`` (401) unless
    it is base64 of UTF-8 ``client_id:client_secret`` without control characters, so authlib's lenient reader
    only ever sees well-formed credentials."""
    scheme, _, value = (headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # not base64 (or not ASCII), or not UTF-8 once decoded
        raise InvalidClientError(status_code=401, description="the Basic credentials are not base64 of UTF-8 "
                                                              "client_id:client_secret") from None
    client_id, colon, secret = (unquote(part) for part in decoded.partition(":"))
    if not colon or not client_id or _CONTROL.search(client_id + secret):
        raise InvalidClientError(status_code=401, description="the Basic credentials are malformed")
    return True


def registered_signing_alg(metadata: Mapping[str, object]) -> str | None:
    """``token_endpoint_auth_signing_alg`` (OpenID Connect Dynamic Client Registration 1.0 §2) of a registration
    or metadata document: None when absent; ``ValueError`` unless it is one this server verifies and the client
    authenticates with ``private_key_jwt`` (the only method it applies to here)."""
    if SIGNING_ALG not in metadata:
        return None
    alg = metadata[SIGNING_ALG]
    if alg not in ASSERTION_ALGORITHMS:
        raise ValueError(f"{SIGNING_ALG} must be one of {', '.join(ASSERTION_ALGORITHMS)}")
    if metadata.get("token_endpoint_auth_method") != PRIVATE_KEY_JWT:
        raise ValueError(f"{SIGNING_ALG} applies to token_endpoint_auth_method private_key_jwt only")
    return str(alg)


def assertion_algorithms(client_metadata: Mapping[str, object]) -> list[str]:
    """The algorithms a client's assertion may use: the one it registered (OIDC Registration §2: it MUST be
    used), else any this server verifies."""
    alg = client_metadata.get(SIGNING_ALG)
    return [alg] if isinstance(alg, str) else list(ASSERTION_ALGORITHMS)
