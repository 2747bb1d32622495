"""What the web layer needs from the composition root (``broker.app`` builds it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from broker.config import Settings
from broker.keys.ring import KeyRing
from broker.storage.db import Database

if TYPE_CHECKING:
    from broker.audit import AuditKeys
    from broker.lifecycle.signals import SignedEventVerifier
    from broker.lifecycle.upstream_check import UpstreamCheck
    from broker.oauth.core import OAuthCore
    from broker.observability import Metrics
    from broker.observability.tracing import Tracing
    from broker.testidp.provider import TestIdentityProvider


@dataclass
class BrokerState:
    settings: Settings
    database: Database
    keyring: KeyRing
    oauth: OAuthCore
    testidp: TestIdentityProvider | None = None
    upstream_check: UpstreamCheck | None = None  # check_upstream_on_refresh
    ssf: SignedEventVerifier | None = None  # Shared Signals transmitters, when configured
    logout: SignedEventVerifier | None = None  # Global Token Revocation callers, when configured
    audit_keys: AuditKeys | None = None  # the audit chain's MAC key (broker.audit.keystore)
    metrics: Metrics | None = None  # when metrics.enabled: fed by the middleware and the audit observer
    tracing: Tracing | None = None  # when tracing.enabled: spans around every request and upstream call
    shutting_down: bool = False  # SIGTERM received: /readyz fails while the broker drains (web.shutdown)
    readiness: tuple[str | None, str] = (None, "")  # the failed check and why, as /readyz last logged it
    # (interval in seconds, job): run on a worker thread while the app serves, e.g. sealing the audit chain;
    # an async job runs on the event loop (its database work on threads of its own)
    periodic: list[tuple[float, Callable[[], object]]] = field(default_factory=list)
