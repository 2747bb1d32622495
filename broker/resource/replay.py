"""Single use of DPoP proofs within one process (RFC 9449 §11.1): a bounded, expiring memory of ``jti``s.

A proof is accepted while its ``iat`` is within the window around now, so its ``jti`` is remembered
until ``iat + window``; after that the ``iat`` check refuses it anyway. Keys are ``(jkt, jti)``: a
client's ``jti`` cannot burn another key's. The memory is bounded: when it holds ``max_entries``
proofs that are all still in their window, the next proof is refused rather than an old one forgotten
(a forgotten ``jti`` could be replayed). Several instances of one MCP server do not share this memory;
docs/decisions/0024 says why that is acceptable and what bounds it.
"""

from __future__ import annotations

import heapq

MAX_ENTRIES = 100_000  # ~20 MB at most; 100k proofs in a 10-minute window is ~170 requests a second


class ProofReplayCache:
    """``use(jkt, jti, expires_at, now)``: True the first time, False on a replay or when full."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._expiry: dict[tuple[str, str], float] = {}
        self._by_expiry: list[tuple[float, tuple[str, str]]] = []  # a heap of the same entries

    def use(self, jkt: str, jti: str, expires_at: float, now: float) -> bool:
        """Record a proof until ``expires_at``; False if it was seen and has not expired, or no room is left.

        No await inside: in one event loop, two concurrent uses of one proof cannot both get True.
        """
        self._forget_expired(now)
        key = (jkt, jti)
        if key in self._expiry or len(self._expiry) >= self.max_entries:
            return False
        self._expiry[key] = expires_at
        heapq.heappush(self._by_expiry, (expires_at, key))
        return True

    def __len__(self) -> int:
        return len(self._expiry)

    def full(self) -> bool:
        """No room for another proof (after forgetting expired ones at the last ``use``)."""
        return len(self._expiry) >= self.max_entries

    def _forget_expired(self, now: float) -> None:
        while self._by_expiry and self._by_expiry[0][0] <= now:
            del self._expiry[heapq.heappop(self._by_expiry)[1]]
