"""Observers of committed audit events: how metrics count issuances, denials and revocations
without the protocol core knowing that anyone counts.

``observe(listener)`` adds an in-process listener (the composition root registers the metrics one).
``record`` notes each event on its session; when that session commits, every listener gets an
``ObservedEvent`` per event, in order; when it rolls back, the notes are dropped, so a count is
never ahead of the audit log. With no listener registered, recording costs one truth test.

Listeners run on the committing thread, after the commit: they must be quick, must not touch the
session, and cannot fail the request (an exception is logged and the other listeners still run).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from broker.storage.hot import Tx

log = logging.getLogger("broker.audit")

_PENDING = "broker.audit.observed"  # key in Session.info: events recorded in the open transaction


@dataclass(frozen=True, slots=True)
class ObservedEvent:
    """What a listener learns of a committed event: ids and the recorded data, never a credential."""

    event_type: str
    outcome: str
    client_id: str | None
    server_id: str | None
    data: Mapping[str, Any]


Listener = Callable[[ObservedEvent], None]

_listeners: tuple[Listener, ...] = ()  # replaced, never mutated, so readers need no lock
_lock = threading.Lock()
_hooked = False


def observe(listener: Listener) -> Callable[[], None]:
    """Call ``listener`` for every audit event committed from now on; returns the function that stops it."""
    global _listeners
    with _lock:
        _hook_sessions()
        _listeners = (*_listeners, listener)

    def stop() -> None:
        global _listeners
        with _lock:
            _listeners = tuple(existing for existing in _listeners if existing is not listener)

    return stop


def note(session: Session, event_type: str, outcome: str, client_id: str | None, server_id: str | None,
         data: Mapping[str, Any]) -> None:
    """Remember an event recorded in ``session``'s transaction, for the listeners after it commits."""
    if _listeners:
        session.info.setdefault(_PENDING, []).append(ObservedEvent(event_type, outcome, client_id, server_id, data))


def note_hot(tx: Tx, event_type: str, outcome: str, client_id: str | None, server_id: str | None,
             data: Mapping[str, Any]) -> None:
    """``note`` for a transaction of the hot lane."""
    if _listeners:
        observed = ObservedEvent(event_type, outcome, client_id, server_id, data)
        tx.after_commit(lambda: _deliver([observed]))


def _hook_sessions() -> None:
    global _hooked
    if not _hooked:
        event.listen(Session, "after_commit", _committed)
        event.listen(Session, "after_rollback", _rolled_back)
        _hooked = True


def _committed(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        _deliver(pending)


def _deliver(pending: list[ObservedEvent]) -> None:
    for listener in _listeners:
        for observed in pending:
            try:
                listener(observed)
            except Exception:  # noqa: BLE001 - counting must never fail a committed request
                log.exception("audit observer failed on %s", observed.event_type)


def _rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)
