"""Every HTTP exchange with a third party, reported once it ends: IdPs (discovery, JWKS, token, userinfo,
Graph), ID-JAG issuers' and signal senders' JWKS, Client ID Metadata Documents.

The composition root subscribes what measures them (metrics, tracing); the code making the calls knows
neither. Observers run in the caller's task, so a tracing span started there has the request as parent.
Labels are bounded: ``peer`` is a configured id (or ``cimd``), ``endpoint`` one of ``ENDPOINTS``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger("broker.federation")

ENDPOINTS = ("discovery", "jwks", "token", "userinfo", "revocation", "graph", "document", "other")
# How the callers name what they fetch (``UpstreamHttp``'s ``what``), most specific first.
_WORDS = (("graph", "graph"), ("discovery", "discovery"), ("jwks", "jwks"), ("userinfo", "userinfo"),
          ("revocation", "revocation"), ("token", "token"))


@dataclass(frozen=True)
class UpstreamCall:
    peer_kind: str  # idp, id_jag_issuer, signal_sender, cimd
    peer: str
    endpoint: str
    outcome: str  # 2xx, 3xx, 4xx, 5xx, timeout, unreachable, too_large, refused
    started_at: float  # time.time() at the start, for tracing
    seconds: float


class CallOutcome:
    """Filled in by the caller while the call runs; an exception that escapes unfilled is ``unreachable``."""

    value: str | None = None

    def status(self, code: int) -> None:
        self.value = f"{code // 100}xx"


Observer = Callable[[UpstreamCall], None]
_observers: list[Observer] = []


def observe(observer: Observer) -> Callable[[], None]:
    """Call ``observer`` with every finished upstream call; returns the function that stops it."""
    _observers.append(observer)
    return lambda: _observers.remove(observer) if observer in _observers else None


def endpoint_of(what: str) -> str:
    """``"token endpoint (refresh)"`` -> ``token``: the bounded name of what a caller fetched."""
    lowered = what.lower()
    return next((name for word, name in _WORDS if word in lowered), "other")


@contextmanager
def timed(peer_kind: str, peer: str, endpoint: str) -> Iterator[CallOutcome]:
    """Time the block as one upstream call and report it to the observers when it ends."""
    outcome, started, wall = CallOutcome(), time.perf_counter(), time.time()
    try:
        yield outcome
    except TimeoutError:
        outcome.value = outcome.value or "timeout"
        raise
    except BaseException:
        outcome.value = outcome.value or "unreachable"
        raise
    finally:
        if _observers:
            _report(UpstreamCall(peer_kind, peer, endpoint, outcome.value or "unreachable", wall,
                                 time.perf_counter() - started))


def _report(call: UpstreamCall) -> None:
    for observer in list(_observers):
        try:
            observer(call)
        except Exception:  # noqa: BLE001 - measuring a call must never fail it
            log.exception("upstream call observer failed")
