"""Single use of authorization codes, remembered in this process only.

The test IdP is for development and tests, so its replay store is a bounded in-memory set
of code digests, kept until the code has expired (plus the clock skew). Behind a load
balancer a code could be redeemed once per process; the broker's own codes use a unique
constraint in the database instead (docs/architecture.md, "State").
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class ReplayStoreFull(Exception):
    """Too many unexpired codes remembered; refusing is safer than forgetting one."""


class UsedCodes:
    """Digests of redeemed codes; ``claim`` is True exactly once per digest while remembered."""

    def __init__(self, max_entries: int = 100_000):
        self._max_entries = max_entries
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, digest: bytes, forget_after: float, now: float) -> bool:
        """Mark ``digest`` used until ``forget_after``; False if it was already used."""
        with self._lock:
            self._forget_expired(now)
            if digest in self._seen:
                return False
            if len(self._seen) >= self._max_entries:
                raise ReplayStoreFull()  # fail closed: forgetting a live code would allow its replay
            self._seen[digest] = forget_after
            return True

    def _forget_expired(self, now: float) -> None:
        # Codes share one lifetime, so insertion order is expiry order.
        while self._seen:
            digest, forget_after = next(iter(self._seen.items()))
            if forget_after > now:
                return
            del self._seen[digest]

    def __len__(self) -> int:
        return len(self._seen)
