"""The broker's tables (SQLAlchemy 2 declarative). Alembic migrations are the only way they change.

Conventions:
- timestamps are timezone-aware UTC in Python and naive UTC in the database (``UTCDateTime``);
- secrets (codes, refresh tokens, client secrets) are stored only as SHA-256 hex digests;
- encrypted columns hold AES-GCM output from ``broker.keys.crypto``;
- rows that matter to an investigation are marked (``revoked_at``, ``status``), never deleted.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from broker.storage.enums import ClientStatus, SignInStatus, UserStatus

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database (same on SQLite and PostgreSQL)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    __table__: ClassVar[Table]  # declarative classes map one Table each (SQLAlchemy's stub says FromClause)


class User(Base):
    """A person known to the broker, created just in time at first login or by SCIM."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.ACTIVE)
    # Tokens issued before this instant are dead (set by offboarding; survives restore).
    not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    offboarded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    offboard_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class UpstreamIdentity(Base):
    """A user's account at one upstream IdP; (idp_id, subject) is the identity key, never email."""

    __tablename__ = "upstream_identities"
    __table_args__ = (UniqueConstraint("idp_id", "subject"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    idp_id: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    claims: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    refresh_token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class UpstreamRevocation(Base):
    """An upstream refresh token taken from an offboarded user, until it is revoked at its IdP (RFC 7009).

    Written in the offboarding's transaction (the identity's copy is cleared there); claimed and deleted
    by ``broker.lifecycle.upstream_revocation`` before it calls the IdP, outside any transaction.
    """

    __tablename__ = "upstream_revocations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(36))
    idp_id: Mapped[str] = mapped_column(String(64))
    identity_id: Mapped[str] = mapped_column(String(36))  # named in the encryption's associated data
    token_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Group(Base):
    """A group as named by its source (an IdP's groups claim, SCIM, or the broker itself)."""

    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("source", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(80))  # "idp:<id>", "scim:<id>" or "local"
    name: Mapped[str] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class GroupMembership(Base):
    __tablename__ = "group_memberships"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id"), primary_key=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Client(Base):
    """An OAuth client: pre-registered, registered dynamically (DCR), or a CIMD URL."""

    __tablename__ = "clients"
    id: Mapped[str] = mapped_column(String(2048), primary_key=True)  # the client_id
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # ClientKind
    status: Mapped[str] = mapped_column(String(16), default=ClientStatus.ACTIVE)
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32), default="none")
    # Methods an operator allowed beside token_endpoint_auth_method (client_secret_post next to _basic, ...).
    extra_auth_methods: Mapped[list[str]] = mapped_column(JSON, default=list)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    jwks_uri: Mapped[str | None] = mapped_column(String(2048))
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)  # skips the consent page
    # Scopes the client may hold through client_credentials (its own, machine-to-machine access).
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    may_introspect: Mapped[bool] = mapped_column(Boolean, default=False)  # a resource server's client
    # The MCP server ids whose tokens it may introspect (RFC 7662 §4: only its own audience's).
    resource_servers: Mapped[list[str]] = mapped_column(JSON, default=list)
    # RFC 9449 §5.2: its access tokens are DPoP-bound only; the token endpoint refuses it a request without a proof.
    dpop_bound_access_tokens: Mapped[bool] = mapped_column(Boolean, default=False)
    registered_from: Mapped[str | None] = mapped_column(String(64), index=True)  # DCR: source address
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class McpServer(Base):
    """A protected MCP server (an OAuth resource server) identified by its canonical resource URI."""

    __tablename__ = "mcp_servers"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    resource: Mapped[str] = mapped_column(String(2048), unique=True)
    scopes: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # scope -> description
    default_scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    access_token_lifetime: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The broker issues tokens for it only DPoP-bound (RFC 9449): never a bearer token.
    require_dpop: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AuthorizationCode(Base):
    """A pending authorization code; ``used_at`` set on first redemption (replay detection)."""

    __tablename__ = "authorization_codes"
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(2048))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    resource: Mapped[str] = mapped_column(String(2048))
    scope: Mapped[str] = mapped_column(Text, default="")
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    nonce: Mapped[str | None] = mapped_column(String(512))
    auth_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    acr: Mapped[str | None] = mapped_column(String(255))
    oidc_scope: Mapped[str | None] = mapped_column(String(64))  # "openid ..." when an ID token is due
    family_id: Mapped[str | None] = mapped_column(String(36))  # what the code produced, for replay revocation
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))  # dpop_jkt at /authorize: redeemed with that key only
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class RefreshTokenFamily(Base):
    """One chain of rotated refresh tokens, bound to (client, user, resource, scope)."""

    __tablename__ = "refresh_token_families"
    __table_args__ = (Index("ix_refresh_token_families_user_active", "user_id", "revoked_at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    client_id: Mapped[str] = mapped_column(String(2048), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    resource: Mapped[str] = mapped_column(String(2048))
    scope: Mapped[str] = mapped_column(Text, default="")
    current_hash: Mapped[str] = mapped_column(String(64), unique=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    auth_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    acr: Mapped[str | None] = mapped_column(String(255))
    oidc_scope: Mapped[str | None] = mapped_column(String(64))  # "openid ..." when refreshes carry an ID token
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))  # a public client's DPoP key: refreshed with it only
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # absolute lifetime
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(200))


class RotatedRefreshToken(Base):
    """Hashes of refresh tokens already rotated away; presenting one again revokes its family."""

    __tablename__ = "rotated_refresh_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(ForeignKey("refresh_token_families.id"), index=True)
    rotated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Revocation(Base):
    """A revocation fact, in commit order: a token id, a family, a client, or a user's not-before.

    The auto-increment ``id`` is the cursor of the revocation feed for MCP servers.
    """

    __tablename__ = "revocations"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # RevocationKind
    subject: Mapped[str] = mapped_column(String(2048), index=True)  # jti, family id, user id or client id
    not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class SigningKey(Base):
    """A JWT signing key; the private half is AES-GCM encrypted under the key-encryption key.

    ``purpose`` separates the broker's own keys from the built-in test IdP's.
    Published from creation until ``retired_at`` + the longest token lifetime;
    signs from ``activates_at`` until ``retired_at``.
    """

    __tablename__ = "signing_keys"
    __table_args__ = (Index("ix_signing_keys_purpose_activates", "purpose", "activates_at"),)
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    algorithm: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    activates_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """An append-only audit record. Values only as ids and hashes, never tokens or secrets.

    ``prev_hash``/``hash`` chain the events (filled and verified by ``broker.audit``).
    """

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_type_time", "event_type", "occurred_at"),
                      Index("ix_audit_events_outcome_id", "outcome", "id"))  # denials, newest first
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(320), default="")
    user_id: Mapped[str | None] = mapped_column(String(36), index=True)
    client_id: Mapped[str | None] = mapped_column(String(2048))
    server_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Filled by the sealer (broker.audit.chain): position in the chain, previous link, this link.
    chain_seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(Base):
    """The chain's last link, MAC'd so that cutting events off the end is detected too (one row)."""

    __tablename__ = "audit_chain_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64), default="")
    mac: Mapped[str] = mapped_column(String(64), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SealedSecret(Base):
    """A secret of the broker's own (the audit chain's MAC key), AES-GCM encrypted under the key-encryption
    key like the signing keys, so a KEK rotation re-encrypts it and never changes it."""

    __tablename__ = "sealed_secrets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SchemaSupport(Base):
    """The oldest code revision the schema supports (one row; written by the migration environment,
    read by releases that do not know the database's revision: ``broker.storage.schema``)."""

    __tablename__ = "schema_support"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    oldest_code_revision: Mapped[str] = mapped_column(String(32))


class PendingAuthorization(Base):
    """An authorization request between ``/authorize`` and the code: upstream login, then consent.

    Bound to the browser that started it (``browser_hash``: SHA-256 of a cookie value), found at
    the upstream callback by ``upstream_state_hash``, and used at most once (``status``).
    """

    __tablename__ = "pending_authorizations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    browser_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=SignInStatus.LOGIN)
    client_id: Mapped[str] = mapped_column(String(2048))
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    resource: Mapped[str] = mapped_column(String(2048))
    server_id: Mapped[str] = mapped_column(String(64))
    requested_scope: Mapped[str] = mapped_column(Text, default="")
    granted_scope: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str | None] = mapped_column(Text)  # the client's, echoed back as given
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    nonce: Mapped[str | None] = mapped_column(String(512))
    idp_id: Mapped[str] = mapped_column(String(64))
    upstream_state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    upstream_nonce: Mapped[str] = mapped_column(String(64))
    upstream_verifier_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    auth_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    acr: Mapped[str | None] = mapped_column(String(255))
    oidc_scope: Mapped[str | None] = mapped_column(String(64))  # the OIDC scopes asked for, when openid was
    prompt: Mapped[str | None] = mapped_column(String(64))  # OIDC prompt values asked for (consent: ask again)
    dpop_jkt: Mapped[str | None] = mapped_column(String(64))  # the key the code will be bound to (RFC 9449 §10)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class Consent(Base):
    """A user's approval of a client reaching an MCP server with some scopes."""

    __tablename__ = "consents"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(2048), primary_key=True)
    server_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    granted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SeenJti(Base):
    """Single use of JWT ids (client assertions, later ID-JAGs), across every broker instance.

    The primary key is SHA-256 of (purpose, issuer, jti); rows may be purged after ``expires_at``.
    """

    __tablename__ = "seen_jtis"
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class PolicyVersion(Base):
    """One version of the access policy (the TOML document); the highest number is in force.

    Versions are never edited: a change or a rollback adds a new version.
    """

    __tablename__ = "policy_versions"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    document: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(320))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScimUser(Base):
    """A user as one IdP's SCIM client provisioned them: a SCIM resource over a broker user.

    The SCIM ``id`` is this row's id. ``external_id`` is the subject of the user's upstream identity at
    ``idp_id``, so a later login through that IdP lands on the same broker user. ``active`` is what the
    IdP last said; ``offboarded_at`` is when this resource's deactivation offboarded the user (a SCIM
    reactivation only lifts that offboarding, never one made by someone else). ``deleted_at`` marks a
    resource the IdP deleted: it answers 404 from then on, and the user row stays for the audit trail.
    """

    __tablename__ = "scim_users"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    idp_id: Mapped[str] = mapped_column(String(64))
    user_name: Mapped[str] = mapped_column(String(320))
    user_name_key: Mapped[str] = mapped_column(String(320))  # NFC + lower case: userName is caseExact false
    external_id: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # as provisioned, never a password
    offboarded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


# Unique among the resources an IdP has not deleted (RFC 7643 §4.1: userName is unique per service provider).
_LIVE_SCIM_USER_INDEXES = (
    Index("ix_scim_users_live_user_name", ScimUser.idp_id, ScimUser.user_name_key, unique=True,
          sqlite_where=ScimUser.deleted_at.is_(None)),
    Index("ix_scim_users_live_external_id", ScimUser.idp_id, ScimUser.external_id, unique=True,
          sqlite_where=ScimUser.deleted_at.is_(None)),
)


def add_postgresql_options() -> None:
    """Give the models their PostgreSQL-only options (the live SCIM indexes' ``postgresql_where``).

    A PostgreSQL option loads SQLAlchemy's whole PostgreSQL dialect package (its asyncpg, psycopg, pg8000...
    modules); ``make_engine`` calls this for a PostgreSQL URL, so a SQLite process never loads it. Idempotent.
    """
    for index in _LIVE_SCIM_USER_INDEXES:
        index.dialect_options["postgresql"]["where"] = ScimUser.deleted_at.is_(None)


class ScimGroup(Base):
    """The SCIM side of a ``Group`` (source ``scim:<idp>``) that an IdP's SCIM client manages."""

    __tablename__ = "scim_groups"
    __table_args__ = (Index("ix_scim_groups_idp_name", "idp_id", "display_name_key"),)
    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id"), primary_key=True)
    idp_id: Mapped[str] = mapped_column(String(64))
    display_name_key: Mapped[str] = mapped_column(String(255))  # NFC + lower case, for displayName eq
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AdminSession(Base):
    """A signed-in admin console session. ``id`` is SHA-256 of the cookie value (the value is never stored).

    ``roles`` come from the user's IdP groups at sign-in. The session ends at ``expires_at`` (absolute
    lifetime), after the idle timeout since ``last_seen_at``, or at logout (``ended_at``). Rows are purged a
    week after they expire (``storage.housekeeping``); sign-ins and sign-outs stay in the audit log.
    ``csrf_secret`` is the synchronizer token every console form carries.
    """

    __tablename__ = "admin_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    idp_id: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(320), default="")
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    csrf_secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


# The console's dashboard counts users active today.
Index("ix_users_last_login_at", User.last_login_at)
