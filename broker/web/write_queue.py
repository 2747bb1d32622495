"""Requests that wait on the event loop for this process's SQLite write queue.

``Database.transaction_now`` refuses at once while another transaction of this process holds the queue
(the audit sealer, housekeeping, or a request's transaction on a worker thread). Sending the refused
request to a worker thread to wait there made it a thread transaction when its turn came: under load
those threads held the queue while competing with the event loop for the GIL, so more requests found it
taken and followed them onto threads. Waiting here keeps them on the loop: the database announces every
end of one of this process's transactions (``Database.on_release``), which wakes the first waiter, and
the woken request runs inline once the queue is free.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

from broker.storage.db import Database


class InlineQueue:
    """The event loop's waiters for the queue, first come first woken. Created while the app serves."""

    def __init__(self, database: Database, loop: asyncio.AbstractEventLoop):
        self._database = database
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._waiters: deque[asyncio.Future[None]] = deque()

    def released(self) -> None:
        """The database's listener: a transaction of this process left the queue (any thread)."""
        if not self._waiters:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake()
        else:
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop has closed: nobody is left waiting on it
                pass

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a waiter whose request was cancelled, or that timed out, is skipped
                waiter.set_result(None)
                return

    async def wait(self, timeout: float) -> None:
        """Return when the queue may be free: woken by a release, at once if it is free already, or after
        ``timeout`` seconds (the caller tries again either way)."""
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        if not self._database.queue_taken:  # released between the refusal and the line above
            waiter.cancel()
            return
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            pass
        finally:
            waiter.cancel()  # no-op once woken; skipped by _wake otherwise
