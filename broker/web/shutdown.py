"""Graceful shutdown under uvicorn, in every worker process.

On SIGTERM ``/readyz`` answers 503 at once while the broker keeps serving for ``server.shutdown_drain``
seconds, so a load balancer polling it stops sending new requests before anything is refused. Only then
is the signal passed on to uvicorn's own handler: it stops accepting connections and waits for the
requests in flight for what is left of ``server.shutdown_timeout`` (``timeout_graceful_shutdown``, which
the serve command sets from ``Plan.graceful``), then cancels them and the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from broker.config import ServerSettings

log = logging.getLogger("broker.web.shutdown")
EXIT_MARGIN = 0.5  # seconds kept from the bound for what follows the requests (lifespan end, interpreter exit)


@dataclass(frozen=True)
class Plan:
    drain: float  # seconds /readyz says 503 while the broker still serves
    graceful: float  # then, seconds the requests in flight may take before they are cancelled

    @classmethod
    def of(cls, server: ServerSettings) -> Plan:
        drain = min(server.shutdown_drain, server.shutdown_timeout)
        return cls(drain, max(server.shutdown_timeout - drain - EXIT_MARGIN, 0.0))


@contextmanager
def drain_on_sigterm(drain: float, mark: Callable[[], None], loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """While the app serves: SIGTERM calls ``mark`` (readiness fails) and reaches the server's own handler
    ``drain`` seconds later; a second SIGTERM reaches it at once. Outside the main thread, or where no
    handler of SIGTERM is installed (the app run in-process by tests), nothing changes."""
    server_handler = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or not callable(server_handler):
        yield
        return
    signal.signal(signal.SIGTERM, _Drain(drain, mark, loop, server_handler).on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, server_handler)


class _Drain:
    def __init__(self, drain: float, mark: Callable[[], None], loop: asyncio.AbstractEventLoop,
                 server_handler: Callable[[int, FrameType | None], Any]):
        self.drain, self.mark, self.loop, self.server_handler = drain, mark, loop, server_handler
        self.terminating = self.passed = False
        self.timer: asyncio.TimerHandle | None = None

    def on_term(self, sig: int, frame: FrameType | None) -> None:
        """The signal handler: flags, the loop's wake-up pipe, or the server's handler (itself signal-safe)."""
        if self.terminating:
            self.pass_on(sig, frame)
            return
        self.terminating = True
        self.mark()
        self.loop.call_soon_threadsafe(self._start, sig)

    def _start(self, sig: int) -> None:
        if self.passed:
            return
        log.info("SIGTERM: /readyz answers 503 now; new connections are refused in %.1f s", self.drain)
        self.timer = self.loop.call_later(self.drain, self.pass_on, sig, None)

    def pass_on(self, sig: int, frame: FrameType | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.passed = True
        self.server_handler(sig, frame)
