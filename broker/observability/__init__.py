"""Operational visibility: the broker's Prometheus metrics and the listener that serves them.

Nothing in the protocol core imports this package or ``prometheus_client``: request metrics come
from an ASGI middleware in ``broker.web``, and issuance, denial and revocation counts from the
audit events the core already records (``broker.audit.observe``). Only ``web`` and the composition
roots (``app``, ``cli``) import it.
"""

from broker.observability.listener import MetricsListener, bearer_matches
from broker.observability.metrics import Metrics, MetricsUnavailable

__all__ = ["Metrics", "MetricsListener", "MetricsUnavailable", "bearer_matches"]
