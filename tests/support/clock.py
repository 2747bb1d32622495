"""``FakeClock``: a monotonic clock a test moves by hand (caches, rate windows, key sets)."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
