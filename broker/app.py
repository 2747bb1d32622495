"""Composition root: builds the broker's services from settings and wires them into the web app.

This is the only module (with ``cli``) that chooses implementations.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI

from broker import audit, dev, logs
from broker.admin import keys as key_admin
from broker.config import Settings
from broker.federation import calls
from broker.federation.base import (
    Capable,
    ConnectorFactory,
    build_connectors,
)
from broker.federation.entra import EntraConnector
from broker.federation.http import upstream_client
from broker.federation.oidc import OidcConnector
from broker.federation.okta import OktaConnector
from broker.keys.crypto import DecryptionError, Encryptor, derived_key
from broker.keys.ring import KeyRing
from broker.lifecycle.signals import SignedEventVerifier
from broker.lifecycle.upstream_check import UpstreamCheck
from broker.lifecycle.upstream_revocation import Attempt, UpstreamRevocations
from broker.oauth.cimd import MetadataFetcher
from broker.oauth.core import OAuthCore
from broker.oauth.dpop_nonces import nonce_key
from broker.oauth.ssrf import HttpsMetadataFetcher
from broker.observability import Metrics, MetricsUnavailable, workers
from broker.registry.policies import StoredPolicy
from broker.storage import hot, housekeeping, schema
from broker.storage.db import Database, EngineOptions
from broker.storage.models import utcnow
from broker.testidp.provider import TESTIDP_KEY_PURPOSE, TestIdentityProvider
from broker.web import create_app as create_web_app
from broker.web.state import BrokerState

log = logging.getLogger("broker.app")

if TYPE_CHECKING:
    from broker.observability.tracing import Tracing


class StartupError(Exception):
    """The broker cannot serve with this configuration or database (one clear line)."""


AUDIT_SEAL_INTERVAL = 1.0  # seconds: how long an event may wait for its place in the chain
AUDIT_SEAL_BATCH = 100  # events per sealing transaction (a few ms of holding the write lock)
CHECKPOINT_INTERVAL = 1.0  # seconds: SQLite only; how much WAL a request may leave for the background checkpoint
ROTATION_CHECK_MAX = 60.0  # seconds between checks of keys.rotate_every at most
UPSTREAM_REVOCATION_INTERVAL = 2.0  # seconds an offboarded user's IdP refresh token waits to be revoked there
PURGE_INTERVAL = 600.0  # seconds between passes deleting expired pending sign-ins, codes, jti records

# What each type can do beyond signing users in (RefreshConnector, RevocationConnector) is sorted out once, by
# ``idp_connectors``; callers get connectors of the capability they need.
CONNECTOR_TYPES: dict[str, type[OidcConnector]] = {"oidc": OidcConnector, "test": OidcConnector,
                                                   "okta": OktaConnector, "entra": EntraConnector}


def connector_factories(settings: Settings) -> dict[str, ConnectorFactory]:
    """The registered connector types, sharing the broker's one clock-skew setting."""
    return {name: functools.partial(cls, clock_skew=settings.tokens.clock_skew)
            for name, cls in CONNECTOR_TYPES.items()}


def metadata_fetcher(settings: Settings) -> HttpsMetadataFetcher:
    """The SSRF-guarded fetcher of Client ID Metadata Documents, as configured in ``[cimd]``."""
    cimd = settings.cimd
    try:
        return HttpsMetadataFetcher(max_bytes=cimd.max_document_bytes, timeout=cimd.fetch_timeout,
                                    ca_file=cimd.ca_file, allow_loopback=cimd.allow_loopback)
    except ValueError as exc:
        raise StartupError(str(exc)) from None


def idp_connectors(settings: Settings, http: httpx.AsyncClient) -> Capable:
    """One connector per ``[[idps]]`` entry, on ``http``, sorted by what each can do; ``StartupError`` when an
    IdP asks for the upstream check at refresh and its connector cannot refresh."""
    try:
        capable = Capable.sort(build_connectors(settings.idps, connector_factories(settings), http=http,
                                                redirect_uri=lambda idp: f"{settings.issuer}/callback/{idp.id}"))
    except ValueError as exc:
        raise StartupError(f"idps: {exc}") from None
    for idp in settings.idps:
        if idp.check_upstream_on_refresh and idp.id not in capable.refreshing:
            raise StartupError(f"idps: {idp.id!r} sets check_upstream_on_refresh, but a {idp.type!r} IdP cannot "
                               "refresh")
    return capable


async def revoke_upstream_tokens(settings: Settings, database: Database) -> list[Attempt]:
    """Work off the queue of offboarded users' IdP refresh tokens once (the CLI, after an offboarding)."""
    keks = settings.key_encryption_keys()
    if not keks:
        return []
    async with upstream_client() as http:
        revoking = idp_connectors(settings, http).revoking
        return await UpstreamRevocations(database, Encryptor.of(keks), revoking).run()


def build_state(settings: Settings, http: httpx.AsyncClient | None = None,
                client_metadata: MetadataFetcher | None = None) -> BrokerState:
    database = Database(settings.database_url, EngineOptions(
        pool_size=settings.database.pool_size, max_overflow=settings.database.max_overflow,
        pool_timeout=settings.database.pool_timeout,
        sqlite_busy_timeout_ms=settings.database.sqlite_busy_timeout_ms, echo=settings.database.echo,
        sqlite_background_checkpoint=True))
    keks = settings.key_encryption_keys()
    if not keks:
        raise StartupError("keys.key_encryption_key: required (set BROKER_KEYS__KEY_ENCRYPTION_KEY or "
                           "keys.key_encryption_key_file; `broker keys new-kek` prints a fresh one)")
    kek, encryptor = keks[0], Encryptor.of(keks)
    keyring = KeyRing.of_broker(encryptor, settings)
    testidp = None
    if settings.testidp.enabled:
        testidp = TestIdentityProvider(settings.testidp, issuer=f"{settings.issuer}/testidp",
                                       keyring=KeyRing(encryptor, TESTIDP_KEY_PURPOSE, "ES256"),
                                       encryptor=encryptor)
    http = http or upstream_client()
    connectors = idp_connectors(settings, http)
    oauth = OAuthCore(settings, keyring, encryptor, StoredPolicy(), connectors.connectors,
                      csrf_key=derived_key(kek, "broker-csrf"),
                      client_metadata=client_metadata or metadata_fetcher(settings), http=http,
                      dpop_nonce_key=nonce_key(kek))
    audit_keys = audit.AuditKeys(encryptor, keks)

    # The sealer works in batches, each its own transaction, with a pause between them longer than the hot
    # lane's longest wait for SQLite's lock, so token requests get in between
    # (docs/decisions/0009-two-transaction-lanes.md).
    def seal_audit_chain() -> None:
        while True:
            with database.transaction() as session:
                sealed = audit.seal(session, audit_keys.get(session), limit=AUDIT_SEAL_BATCH)
            if sealed < AUDIT_SEAL_BATCH:
                return
            time.sleep(hot.BUSY_LONGEST_WAIT_S)

    def purge_expired_rows() -> None:
        with database.transaction() as session:
            housekeeping.purge_expired(session, utcnow())

    audience = settings.signals.audience or settings.issuer
    signals = settings.signals
    ssf = SignedEventVerifier(signals.ssf_transmitters, audience, http, skew=settings.tokens.clock_skew) \
        if signals.ssf_transmitters else None
    logout = SignedEventVerifier(signals.logout_issuers, audience, http, skew=settings.tokens.clock_skew) \
        if signals.logout_issuers else None
    upstream_revocations = UpstreamRevocations(database, encryptor, connectors.revoking)
    periodic: list[tuple[float, Callable[[], object]]] = [
        (AUDIT_SEAL_INTERVAL, seal_audit_chain), (PURGE_INTERVAL, purge_expired_rows),
        (UPSTREAM_REVOCATION_INTERVAL, upstream_revocations.run)]
    if database.dialect == "sqlite":
        periodic.append((CHECKPOINT_INTERVAL, database.checkpoint))
    if settings.keys.rotate_every:
        periodic.append(scheduled_rotation(settings, database, keyring))
    metrics, tracing = build_metrics(settings, database), build_tracing(settings)
    if metrics is not None and metrics.multiprocess_dir:
        periodic.append((settings.metrics.refresh_interval, metrics.refresh))
    return BrokerState(settings=settings, database=database, keyring=keyring, oauth=oauth, testidp=testidp,
                       ssf=ssf, logout=logout, upstream_check=UpstreamCheck(settings, encryptor, connectors.refreshing),
                       metrics=metrics, tracing=tracing, audit_keys=audit_keys, periodic=periodic)


def scheduled_rotation(settings: Settings, database: Database, keyring: KeyRing) -> tuple[float, Callable[[], None]]:
    """The periodic job of ``keys.rotate_every``, checked a twentieth as often as it rotates (1-60 s)."""
    every, delay = settings.keys.rotate_every, settings.keys.activation_delay

    def rotate_signing_key_when_due() -> None:
        with database.transaction() as session:
            key_admin.rotate_on_schedule(session, keyring, every, delay)

    return min(ROTATION_CHECK_MAX, max(1.0, every / 20)), rotate_signing_key_when_due


def build_metrics(settings: Settings, database: Database) -> Metrics | None:
    """Prometheus metrics when ``metrics.enabled``: in memory, or in the directory ``broker serve``
    shares among its workers (``PROMETHEUS_MULTIPROC_DIR``)."""
    if not settings.metrics.enabled:
        return None
    try:
        metrics = Metrics(settings.metrics, pool=lambda: database.engine.pool,
                          multiprocess_dir=os.environ.get(workers.ENV))
    except MetricsUnavailable as exc:
        raise StartupError(f"metrics: {exc}") from None
    metrics.watch(calls.observe(metrics.observe_upstream))
    return metrics


def build_tracing(settings: Settings, exporter: object = None) -> Tracing | None:
    """OpenTelemetry spans for requests and upstream calls when ``tracing.enabled`` (the otel extra)."""
    if not settings.tracing.enabled:
        return None
    from broker.observability.tracing import Tracing, TracingUnavailable

    try:
        tracing = Tracing(settings.tracing, exporter)
    except TracingUnavailable as exc:
        raise StartupError(str(exc)) from None
    tracing.watch(calls.observe(tracing.on_upstream))
    return tracing


def prepare(state: BrokerState) -> None:
    """Refuse to serve on a stale schema or a wrong key-encryption key; create missing signing keys."""
    found = schema.require_usable(state.database)
    if found.verdict is schema.Verdict.AHEAD:
        log.info("the database schema is at revision %s, newer than this broker (%s); it supports releases from %s "
                 "on, so this one serves", found.revision, schema.HEAD, found.oldest_code)
    with state.database.transaction() as session:
        try:
            state.keyring.verify_kek(session)
        except DecryptionError as exc:
            raise StartupError(f"keys.key_encryption_key: {exc} "
                               "(is this the key-encryption key the database was created with?)") from None
        state.keyring.ensure(session)
        if state.testidp is not None:
            state.testidp.keyring.ensure(session)
        assert state.audit_keys is not None  # build_state makes them
        try:
            state.audit_keys.get(session)  # stored now if this database has none yet
        except audit.UnknownAuditKey as exc:
            raise StartupError(str(exc)) from None


def create_app(settings: Settings) -> FastAPI:
    state = build_state(settings)
    prepare(state)
    return create_web_app(state)


def create_app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` worker processes: settings from BROKER_CONFIG and BROKER_*."""
    path, data_dir = os.environ.get("BROKER_CONFIG"), os.environ.get("BROKER_DATA_DIR")
    settings = dev.load_settings(Path(path) if path else None, Path(data_dir) if data_dir else None)
    logs.configure(settings.logging.level, settings.logging.format)
    return create_app(settings)
