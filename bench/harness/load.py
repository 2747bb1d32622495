"""The closed-loop load generator: C virtual clients, bounded in time and in iterations.

A virtual client is an async callable doing one iteration (one request, or a whole login chain) and
returning True when it succeeded. It raises ``Exhausted`` when it has nothing left to send (pre-minted
codes or assertions used up); its loop then ends. Iterations are timed one by one; the rate counts
successful iterations over the wall time from the first start to the last completion.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bench.harness.http1 import HttpError, Response

VirtualClient = Callable[[], Awaitable[bool]]
STRAGGLER_GRACE_S = 30.0  # a request still open this long after the deadline is abandoned (counted as an error)


class Exhausted(Exception):
    """The virtual client has nothing left to send."""


class Failed(Exception):
    """The iteration got an answer it should not have; the message says which (kept as a sample)."""


def expect(response: Response, status: int, needle: bytes = b"") -> bool:
    """True when ``response`` has ``status`` (and ``needle`` in its body); else raise ``Failed``."""
    if response.status != status or needle not in response.body:
        raise Failed(f"HTTP {response.status}: {response.body[:160].decode('utf-8', 'replace')}")
    return True


@dataclass
class LoadResult:
    ok: int
    errors: int
    elapsed: float
    latencies: list[float]  # seconds, successful and failed iterations alike
    error_samples: dict[str, int]  # what went wrong, and how often (HttpError, Failed and exception types)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0


async def drive(clients: Sequence[VirtualClient], duration: float, max_iterations: int) -> LoadResult:
    """Run every client in a loop until ``duration`` seconds passed or ``max_iterations`` were started."""
    started = time.perf_counter()
    deadline = started + duration
    budget = max_iterations
    latencies: list[float] = []
    counts = {"ok": 0, "errors": 0}
    samples: dict[str, int] = {}

    async def loop(client: VirtualClient) -> None:
        nonlocal budget
        while budget > 0 and time.perf_counter() < deadline:
            budget -= 1
            began = time.perf_counter()
            try:
                ok = await client()
            except Exhausted:
                return
            except (Failed, HttpError, OSError, ValueError, KeyError) as exc:
                ok = False
                what = str(exc) if isinstance(exc, Failed | HttpError) else repr(exc)
                samples[what[:200]] = samples.get(what[:200], 0) + 1
            latencies.append(time.perf_counter() - began)
            counts["ok" if ok else "errors"] += 1

    tasks = [asyncio.ensure_future(loop(client)) for client in clients]
    done, pending = await asyncio.wait(tasks, timeout=duration + STRAGGLER_GRACE_S)
    for task in pending:
        task.cancel()
    counts["errors"] += len(pending)
    if pending:
        samples["still open after the grace period"] = len(pending)
    elapsed = time.perf_counter() - started
    for task in done:
        task.result()  # a bug in a client surfaces here
    return LoadResult(counts["ok"], counts["errors"], elapsed, latencies, samples)
