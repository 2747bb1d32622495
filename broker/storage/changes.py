"""When an in-process copy of database state must be read again.

The broker keeps a few things in memory between requests: decrypted signing keys, the compiled
policy, the registry of MCP servers. Such caches are short-lived and invalidated by
what the database says. ``Recheck`` says when to look again: at once after a transaction of this
process that wrote one of the watched tables commits, and otherwise every ``interval`` seconds,
which bounds how long a change made by another instance (or the CLI) takes to be seen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from broker.storage.models import McpServer, PolicyVersion, SigningKey

WATCHED: dict[type, str] = {SigningKey: "signing_keys", McpServer: "mcp_servers", PolicyVersion: "policy_versions"}
_PENDING = "broker.changed_tables"
_generations: dict[str, int] = dict.fromkeys(WATCHED.values(), 0)
_lock = threading.Lock()


def wrote(session: Session, table: str) -> None:
    """A repository's statement changed ``table`` (the ORM's writes are noted by themselves): caches of it are
    read again once this transaction commits."""
    session.info.setdefault(_PENDING, set()).add(table)


def generation(table: str) -> int:
    return _generations[table]


class Recheck:
    """Whether a cache of ``table`` is due for a fresh read; thread-safe enough (a race only rereads)."""

    def __init__(self, table: str, interval: float, clock: Callable[[], float] = time.monotonic):
        self.table = table
        self.interval = interval
        self.clock = clock
        self._seen = -1
        self._at = float("-inf")

    def start(self) -> int | None:
        """None while the cache is fresh; else a token to pass to ``done`` after reading the database."""
        seen = _generations[self.table]
        if seen == self._seen and self.clock() < self._at + self.interval:
            return None
        return seen

    def done(self, token: int) -> None:
        self._seen, self._at = token, self.clock()


@event.listens_for(Session, "after_flush")
def _note_writes(session: Session, _context: Any) -> None:
    tables = {WATCHED[type(row)] for rows in (session.new, session.dirty, session.deleted) for row in rows
              if type(row) in WATCHED}
    if tables:
        session.info.setdefault(_PENDING, set()).update(tables)


@event.listens_for(Session, "after_commit")
def _bump(session: Session) -> None:
    tables = session.info.pop(_PENDING, None)
    if tables:
        with _lock:
            for table in tables:
                _generations[table] += 1


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
