"""When a key is published and when it signs: pure functions of the key's times and the clock.

A key is published in the JWKS from its creation (so verifiers learn it before it signs)
until ``retired_at`` plus the longest lifetime of a JWT it may have signed (``Publication``). It signs
from ``activates_at`` until ``retired_at``; the newest active key wins.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar


@dataclass(frozen=True)
class Publication:
    """How long a retired key stays published: the longest a token it signed may still be valid.

    ``longest`` is the settings' longest JWT lifetime, clock skew included; an MCP server's own access
    token lifetime, plus ``skew``, counts instead when it is longer.
    """

    longest: int
    skew: int

    def grace(self, longest_server_lifetime: int | None) -> dt.timedelta:
        return dt.timedelta(seconds=max(self.longest, (longest_server_lifetime or 0) + self.skew))


class KeyTimes(Protocol):
    """A key's times, read-only: a stored key (``SigningKey``) or its row (``KeyRow``)."""

    @property
    def kid(self) -> str: ...
    @property
    def created_at(self) -> dt.datetime: ...
    @property
    def activates_at(self) -> dt.datetime: ...
    @property
    def retired_at(self) -> dt.datetime | None: ...


K = TypeVar("K", bound=KeyTimes)


def is_signing(key: KeyTimes, now: dt.datetime) -> bool:
    return key.activates_at <= now and (key.retired_at is None or now < key.retired_at)


def is_published(key: KeyTimes, now: dt.datetime, grace: dt.timedelta) -> bool:
    return key.retired_at is None or now < key.retired_at + grace


def signing_key(keys: Iterable[K], now: dt.datetime) -> K | None:
    """The newest key that is active now, or None."""
    active = [k for k in keys if is_signing(k, now)]
    return max(active, key=lambda k: (k.activates_at, k.created_at), default=None)


def published(keys: Iterable[K], now: dt.datetime, grace: dt.timedelta) -> list[K]:
    return sorted((k for k in keys if is_published(k, now, grace)), key=lambda k: k.activates_at)


def next_activation(keys: Iterable[KeyTimes], now: dt.datetime, every: dt.timedelta,
                    delay: dt.timedelta) -> dt.datetime | None:
    """Scheduled rotation: when the next key starts signing, if it is time to publish it now; else None.

    The newest key is succeeded ``every`` after it started signing, and its successor is published ``delay``
    before that (at once, and activating ``delay`` later, when the schedule was missed). Nothing is due while
    a key is still pending, so a schedule shorter than the delay rotates every ``delay``.
    """
    newest = max(keys, key=lambda k: (k.activates_at, k.created_at), default=None)
    if newest is None or newest.activates_at > now:
        return None
    due = newest.activates_at + every
    return max(due, now + delay) if now + delay >= due else None


def retirements_for_rotation(keys: Iterable[K], new_activates_at: dt.datetime) -> list[K]:
    """Keys that stop signing when a key activating at ``new_activates_at`` takes over.

    That is every key not yet retired, a still-pending one included: the newest rotation wins.
    """
    return [k for k in keys if k.retired_at is None or k.retired_at > new_activates_at]
