"""The broker's Prometheus metrics (names and meanings: docs/operations.md).

One ``Metrics`` per app. In a single process its values live in memory and its own registry serves
them, with the standard process, platform and GC collectors and the database pool read at scrape
time. Under ``broker serve --workers N`` (``PROMETHEUS_MULTIPROC_DIR`` set by the serve command)
every worker writes its values to files in that directory and any scrape reads all of them, so
counters and histograms are summed over the workers; per-process values (memory, open files, the
pool) become gauges with a ``pid`` label that each worker refreshes every ``refresh_interval``.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from broker import __version__
from broker.audit import ObservedEvent, Outcome, observe
from broker.config import MetricsSettings, parse_listen
from broker.observability.listener import MetricsListener
from broker.observability.upstream import UpstreamCallLike

log = logging.getLogger("broker.metrics")

# Token requests take about a millisecond in-process; the default buckets start at 5 ms.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
POOL_GAUGES = (("broker_db_pool_size", "Connections the database pool keeps (pool_size)"),
               ("broker_db_pool_checked_out", "Pool connections in use by a request or job"),
               ("broker_db_pool_checked_in", "Idle connections in the pool"),
               ("broker_db_pool_overflow", "Connections open beyond pool_size (at most max_overflow)"))
PROCESS_GAUGES = (("process_resident_memory_bytes", "Resident memory size in bytes"),
                  ("process_open_fds", "Number of open file descriptors"),
                  ("process_start_time_seconds", "Start time of the process since unix epoch in seconds"))

PoolSource = Callable[[], Any]  # returns the SQLAlchemy pool to read (the engine may be replaced)


class MetricsUnavailable(Exception):
    """Metrics cannot run as configured in this process (one clear line)."""


class Metrics:
    """Counters and histograms the web layer and the audit observer feed; ``render`` for a scrape."""

    def __init__(self, settings: MetricsSettings, pool: PoolSource | None = None,
                 multiprocess_dir: str | None = None):
        if multiprocess_dir and values.ValueClass is values.MutexValue:
            raise MetricsUnavailable("PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported")
        self.settings = settings
        self.multiprocess_dir = multiprocess_dir or None
        self.pool = pool
        self.registry = CollectorRegistry()
        own = None if self.multiprocess_dir else self.registry  # multiprocess: values go to files only
        self._define(own)
        if self.multiprocess_dir:
            MultiProcessCollector(self.registry, path=self.multiprocess_dir)
            self._define_per_process()
        else:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            self.registry.register(GC_COLLECTOR)
            self.registry.register(_PoolCollector(pool))
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._last_cpu = 0.0
        self._refresh_lock = threading.Lock()
        self.listener: MetricsListener | None = None
        self._closers: list[Callable[[], None]] = [observe(self.count_audit_event)]

    def _define(self, registry: CollectorRegistry | None) -> None:
        self.requests = Counter("broker_http_requests", "HTTP requests by route template, method and status class",
                                ["route", "method", "status"], registry=registry)
        self.latency = Histogram("broker_http_request_duration_seconds", "HTTP request duration until the "
                                 "response is sent", ["route", "method", "status"], buckets=BUCKETS, registry=registry)
        self.tokens = Counter("broker_tokens_issued", "Tokens issued by grant type and MCP server id",
                              ["grant_type", "server"], registry=registry)
        self.denials = Counter("broker_policy_denials", "Access refused by policy, by stage (authorize, token, "
                               "step_up) and MCP server id", ["stage", "server"], registry=registry)
        self.revocations = Counter("broker_revocations", "Revocations by kind", ["kind"], registry=registry)
        self.reuse = Counter("broker_refresh_token_reuse_detected", "Rotated refresh tokens presented again "
                             "(each revokes its family)", registry=registry)
        self.audit_events = Counter("broker_audit_events", "Committed audit events by type and outcome",
                                    ["event_type", "outcome"], registry=registry)
        self.rate_limited = Counter("broker_rate_limited", "Requests refused with 429 by endpoint group and "
                                    "key kind (client, address)", ["group", "key"], registry=registry)
        self.build_info = Gauge("broker_build_info", "The running release: always 1, with its version and Python's",
                                ["version", "python"], multiprocess_mode="max", registry=registry)
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.upstream = Counter("broker_upstream_requests", "Calls to IdPs, ID-JAG issuers, signal senders and CIMD "
                                "hosts by peer kind, configured id, endpoint and outcome",
                                ["peer_kind", "peer", "endpoint", "outcome"], registry=registry)
        self.upstream_latency = Histogram("broker_upstream_request_duration_seconds", "Duration of calls to IdPs, "
                                          "ID-JAG issuers, signal senders and CIMD hosts",
                                          ["peer_kind", "peer", "endpoint"], buckets=BUCKETS, registry=registry)
        self.ready = Gauge("broker_readiness_check", "1 if the check passed at this worker's last /readyz, 0 if "
                           "it failed (the log says why)", ["check"], multiprocess_mode="liveall", registry=registry)

    def _define_per_process(self) -> None:
        self.process = {name: Gauge(name, text, multiprocess_mode="liveall", registry=None)
                        for name, text in PROCESS_GAUGES}
        self.cpu = Counter("process_cpu_seconds", "Total user and system CPU time spent in seconds (all workers)",
                           registry=None)
        self.pool_gauges = {name: Gauge(name, text, multiprocess_mode="liveall", registry=None)
                            for name, text in POOL_GAUGES}
        self._process_reader = ProcessCollector(registry=None)

    # ------------------------------------------------------------------ feeding

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One finished HTTP request (the hot path: two cached children, no label lookup)."""
        key = (route, method, status // 100)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._new_children(*key)
        children[0].inc()
        children[1].observe(seconds)

    def _new_children(self, route: str, method: str, status_class: int) -> tuple[Any, Any]:
        labels = (route, method if method in METHODS else "other", f"{status_class}xx")
        return self.requests.labels(*labels), self.latency.labels(*labels)

    def observe_upstream(self, call: UpstreamCallLike) -> None:
        """One finished call to a third party (``broker.federation.calls``, subscribed by the composition root)."""
        self.upstream.labels(call.peer_kind, call.peer, call.endpoint, call.outcome).inc()
        self.upstream_latency.labels(call.peer_kind, call.peer, call.endpoint).observe(call.seconds)

    def watch(self, stop: Callable[[], None]) -> None:
        """Call ``stop`` at ``close`` (the subscriptions the composition root made for these metrics)."""
        self._closers.append(stop)

    def count_rate_limited(self, group: str, key: str) -> None:
        self.rate_limited.labels(group, key).inc()

    def readiness(self, checks: dict[str, bool]) -> None:
        """The outcome of each readiness check at the last /readyz (True: passed)."""
        for name, passed in checks.items():
            self.ready.labels(name).set(1 if passed else 0)

    def count_audit_event(self, event: ObservedEvent) -> None:
        """The audit observer: every committed event by type, and the operational counts derived from them."""
        self.audit_events.labels(event.event_type, event.outcome).inc()
        derive = _DERIVED.get(event.event_type)
        if derive is not None:
            derive(self, event)

    # ------------------------------------------------------------------ serving

    def render(self) -> tuple[bytes, str]:
        """The exposition text (Prometheus 0.0.4) and its content type."""
        if self.multiprocess_dir:
            self.refresh()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def refresh(self) -> None:
        """Multi-worker mode: write this worker's process and pool gauges (a periodic job and each scrape)."""
        if not self.multiprocess_dir:
            return
        with self._refresh_lock:
            for family in self._process_reader.collect():
                sample = family.samples[0] if family.samples else None
                if sample is not None and family.name in self.process:
                    self.process[family.name].set(sample.value)
                elif sample is not None and family.name == "process_cpu_seconds":
                    self.cpu.inc(max(0.0, sample.value - self._last_cpu))
                    self._last_cpu = max(self._last_cpu, sample.value)
            for (name, _), value in zip(POOL_GAUGES, pool_status(self.pool) or (), strict=False):
                self.pool_gauges[name].set(value)

    def start(self) -> None:
        """At app startup: refresh per-process gauges; open the separate listener unless the serve
        command's supervisor holds it (multi-worker mode: one port, bound once, for every worker)."""
        self.refresh()
        if self.settings.listen and not self.multiprocess_dir and self.listener is None:
            host, port = parse_listen(self.settings.listen)
            self.listener = MetricsListener(host, port, self.render, self.token())
            self.listener.start()

    def close(self) -> None:
        """At app shutdown: stop listening, stop counting, and drop this worker's live gauges."""
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        while self._closers:
            self._closers.pop()()
        if self.multiprocess_dir:
            mark_process_dead(os.getpid(), self.multiprocess_dir)

    def token(self) -> str | None:
        secret = self.settings.bearer_token
        return secret.get_secret_value().strip() if secret is not None else None


def pool_status(source: PoolSource | None) -> tuple[int, int, int, int] | None:
    """(size, checked out, checked in, overflow) of a queue pool; None for pools without a size."""
    if source is None:
        return None
    pool = source()
    try:
        return pool.size(), pool.checkedout(), pool.checkedin(), max(0, pool.overflow())
    except (AttributeError, NotImplementedError):  # NullPool, StaticPool, SingletonThreadPool
        return None


class _PoolCollector(Collector):
    """The database pool, read at scrape time."""

    def __init__(self, pool: PoolSource | None):
        self.pool = pool

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = pool_status(self.pool)
        if status is None:
            return
        for (name, text), value in zip(POOL_GAUGES, status, strict=True):
            yield GaugeMetricFamily(name, text, value=value)


# ---------------------------------------------------------------- audit events -> operational counts

def _issued(grant: str | None) -> Callable[[Metrics, ObservedEvent], None]:
    def count(metrics: Metrics, event: ObservedEvent) -> None:
        metrics.tokens.labels(grant or str(event.data.get("grant") or "unknown"), event.server_id or "").inc()
    return count


def _denied(stage: str) -> Callable[[Metrics, ObservedEvent], None]:
    def count(metrics: Metrics, event: ObservedEvent) -> None:
        if event.outcome == Outcome.DENIED:
            metrics.denials.labels(stage, event.server_id or "").inc()
    return count


def _revoked(kind: str) -> Callable[[Metrics, ObservedEvent], None]:
    def count(metrics: Metrics, event: ObservedEvent) -> None:
        metrics.revocations.labels(kind).inc()
    return count


def _token_revoked(metrics: Metrics, event: ObservedEvent) -> None:
    kind = "family_revoked" if event.data.get("token_type") == "refresh_token" else "token_revoked"
    metrics.revocations.labels(kind).inc()


def _reuse_detected(metrics: Metrics, event: ObservedEvent) -> None:
    metrics.reuse.inc()
    metrics.revocations.labels("refresh_token_reuse").inc()


def _code_replayed(metrics: Metrics, event: ObservedEvent) -> None:
    if event.data.get("family_id"):  # RFC 6749 §4.1.2: the family the code produced was revoked
        metrics.revocations.labels("authorization_code_replay").inc()


_DERIVED: dict[str, Callable[[Metrics, ObservedEvent], None]] = {
    "token.issued": _issued(None),  # the grant is in the event: authorization_code, client_credentials, jwt-bearer
    "token.refreshed": _issued("refresh_token"),
    "id_jag.issued": _issued("token-exchange"),
    "authorization.decision": _denied("authorize"),
    "authorization.denied": _denied("token"),
    "authorization.step_up_required": _denied("step_up"),
    "user.offboarded": _revoked("user_offboarded"),
    "user.sessions_revoked": _revoked("user_sessions_revoked"),
    "user.session_revoked": _revoked("session_revoked"),
    "token.revoked": _token_revoked,
    "refresh_token.reuse_detected": _reuse_detected,
    "authorization_code.replayed": _code_replayed,
}
