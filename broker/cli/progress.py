"""Progress of a long command on stderr: nothing for the first second, then a count (a line on a terminal
rewritten in place, else a line every few seconds), so scripts reading stdout are never disturbed."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """``advance(n)`` as work is done; ``done()`` at the end. Quiet when it all takes under ``after`` seconds."""

    def __init__(self, what: str, total: int | None = None, *, after: float = 1.0, every: float | None = None,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.what, self.total, self.after = what, total, after
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.every = every if every is not None else (0.2 if self.live else 5.0)
        self.clock = clock
        self.count = 0
        self._started = clock()
        self._shown_at: float | None = None

    def advance(self, n: int = 1) -> None:
        self.count += n
        now = self.clock()
        if now - self._started < self.after:
            return
        if self._shown_at is None or now - self._shown_at >= self.every:
            self._show(now)

    def done(self) -> None:
        """End the count: the final figure once anything was shown (a terminal's line is ended)."""
        if self._shown_at is not None:
            self._show(self.clock(), final=True)

    def _show(self, now: float, final: bool = False) -> None:
        self._shown_at = now
        of = f" of {self.total}" if self.total is not None else ""
        line = f"broker: {self.what}: {self.count}{of}"
        if self.live:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
