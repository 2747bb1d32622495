"""Revocation (RFC 7009) and introspection (RFC 7662) on authlib's endpoints.

Both read the database on every call, so every broker instance gives the same answer the
moment a revocation commits: an access token is active only while its signature, issuer and
expiry hold, its ``jti`` is not revoked, its refresh-token family is live, its user is active
and not revoked since it was issued, and its MCP server is still enabled.
"""

from __future__ import annotations

import datetime as dt
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from sqlalchemy.orm import Session

from broker import audit
from broker.oauth import cutoff, secrets
from broker.oauth.clients import AUTH_METHODS, SECRET_METHODS
from broker.oauth.verification import verify_signed
from broker.registry import servers
from broker.storage import grants, users
from broker.storage.models import RefreshTokenFamily

ALGORITHMS = ["ES256", "RS256"]


class _Record:
    """authlib asks these; ``is_active`` answers the real question from the database."""

    def is_expired(self) -> bool:
        return False

    def is_revoked(self) -> bool:
        return False


@dataclass
class AccessTokenRecord(_Record):
    claims: dict[str, Any]

    def check_client(self, client: Any) -> bool:
        return self.claims.get("client_id") == client.client_id


@dataclass
class RefreshTokenRecord(_Record):
    family: RefreshTokenFamily
    current: bool

    def check_client(self, client: Any) -> bool:
        return self.family.client_id == client.client_id


def verify_own_access_token(session: Session, server: Any, unverified_token: str,
                            now: dt.datetime) -> dict[str, Any] | None:
    """Claims of an access token this broker signed and that has not expired; None otherwise."""
    published = server.keyring.jwks(session, now=now)["keys"]
    return verify_signed(published, server.issuer, server.verified_access_tokens, unverified_token, now)


def find_token(request: Any, token: str, hint: str | None) -> AccessTokenRecord | RefreshTokenRecord | None:
    db, server = request.db, request.server_ref
    if hint != "refresh_token" and token.count(".") == 2:
        claims = verify_own_access_token(db, server, token, request.now)
        if claims is not None:
            return AccessTokenRecord(claims)
    digest = secrets.digest(token)
    family = grants.family_by_current(db, digest)
    if family is not None:
        return RefreshTokenRecord(family, current=True)
    family = grants.family_by_rotated(db, digest)
    return RefreshTokenRecord(family, current=False) if family is not None else None


def is_active(request: Any, record: AccessTokenRecord | RefreshTokenRecord) -> bool:
    db, now = request.db, request.now
    if isinstance(record, RefreshTokenRecord):
        family = record.family
        live = record.current and family.revoked_at is None and now < family.expires_at
        return live and _user_active(db, family.user_id, family.created_at)
    claims = record.claims
    family_id = claims.get("sid")
    # Every token a user holds, with a refresh-token family or without (an ID-JAG grant's): only a
    # client-credentials token has the client itself as its subject.
    user_id = claims["sub"] if claims["sub"] != claims.get("client_id") else None
    standing = grants.access_token_standing(db, jti=claims["jti"], client_id=claims.get("client_id", ""),
                                            family_id=family_id, user_id=user_id)
    if standing.revoked_id is not None or standing.client_status != "active":
        return False
    if family_id is not None and standing.family != "live":
        return False
    if user_id is not None and (standing.user_status != "active"
                                or cutoff.predates(claims["iat"], standing.user_not_before)):
        return False
    return _audience_enabled(request, claims.get("aud"))


def _user_active(db: Session, user_id: str, created_at: dt.datetime) -> bool:
    """The user exists, is active, and was not revoked after this refresh-token family was made."""
    user = users.standing(db, user_id)
    return user is not None and user.status == "active" and (user.not_before is None
                                                              or created_at >= user.not_before)


def _audience_enabled(request: Any, audience: Any) -> bool:
    if not isinstance(audience, str):
        return False
    try:
        servers.resolve(request.db, audience, request.server_ref.issuer, include_admin_api=True,
                        include_sign_in=True)  # the aud of a token we signed, not a client's resource
    except servers.UnknownResource:
        return False
    return True


_CURRENT: ContextVar[Any] = ContextVar("broker_endpoint_request")


class _PerRequest:
    """authlib keeps one endpoint object for every request, and some of its hooks get no request.

    The request of the call in progress is kept in a context variable, never on the shared object:
    requests run concurrently in the thread pool, and each must use its own database session.
    """

    def authenticate_token(self, request: Any, client: Any) -> Any:
        _CURRENT.set(request)
        return super().authenticate_token(request, client)  # type: ignore[misc]

    @property
    def _request(self) -> Any:
        return _CURRENT.get()


class BrokerRevocationEndpoint(_PerRequest, RevocationEndpoint):
    """RFC 7009. Public clients revoke with their client_id; unknown tokens still get 200 (§2.2)."""

    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return find_token(self._request, token_string, token_type_hint)

    def revoke_token(self, token: Any, request: Any) -> None:
        """Revoke, and audit, only what is not revoked yet: a repeated revocation is answered alike (§2.2) and
        writes nothing, so it cannot grow the revocation feed or the audit log."""
        now = request.now
        if isinstance(token, RefreshTokenRecord):  # revoking a refresh token revokes its family (§2.1)
            family = token.family
            if grants.revoke_family(request.db, family.id, "revoked by the client", now):
                audit.record(request.db, "token.revoked", actor=family.client_id, user_id=family.user_id,
                             client_id=family.client_id, outcome="revoked",
                             data={"token_type": "refresh_token", "family_id": family.id})
            return
        claims = token.claims
        revoked = grants.revoke_token_id(request.db, claims["jti"], dt.datetime.fromtimestamp(claims["exp"], dt.UTC),
                                         "revoked by the client", claims["client_id"])
        if claims.get("sid"):  # and an access token its refresh token (§2.1: SHOULD)
            revoked = grants.revoke_family(request.db, claims["sid"], "access token revoked by the client",
                                           now) or revoked
        if revoked:
            audit.record(request.db, "token.revoked", actor=claims["client_id"], client_id=claims["client_id"],
                         user_id=claims["sub"] if claims.get("sid") else None, outcome="revoked",
                         data={"token_type": "access_token", "jti": claims["jti"], "family_id": claims.get("sid")})


class BrokerIntrospectionEndpoint(_PerRequest, IntrospectionEndpoint):
    """RFC 7662. Only clients registered as resource servers (``may_introspect``) may ask."""

    CLIENT_AUTH_METHODS = [*SECRET_METHODS, "private_key_jwt"]

    def check_permission(self, token: Any, client: Any, request: Any) -> bool:
        return bool(client.row.may_introspect)

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return find_token(self._request, token_string, token_type_hint)

    def introspect_token(self, token: Any) -> dict[str, Any]:
        request = self._request
        if not is_active(request, token):
            return {"active": False}
        if isinstance(token, RefreshTokenRecord):
            family = token.family
            return {"active": True, "token_type": "refresh_token", "client_id": family.client_id,
                    "scope": family.scope, "sub": family.user_id, "aud": family.resource,
                    "exp": int(family.expires_at.timestamp()), "iss": request.server_ref.issuer}
        claims = token.claims
        body = {"active": True, "token_type": "Bearer", **{k: claims[k] for k in (
            "scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti") if k in claims}}
        if "email" in claims:
            body["username"] = claims["email"]
        return body
