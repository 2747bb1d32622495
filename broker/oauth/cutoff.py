"""Where a user's revocation cuts their tokens off, in the whole seconds of a JWT's ``iat``.

A revocation at instant R (``users.not_before``, kept to the microsecond) kills every token the broker
signed for that user with ``iat < cutoff(R)``, where ``cutoff(R) = floor(R) + 1``: R's own second counts
as before it, so a token issued at R - 0.1 s with the same whole-second ``iat`` is dead too. A token
signed for that user after R (the issuing transaction read R) carries ``iat = max(now, cutoff(R))``
(``issued_at``), up to a second ahead of the clock, so it is never mistaken for an older one.
Introspection, the admin API, UserInfo, token exchange and the revocation feed (whose ``not_before`` is
``cutoff(R)``) all use ``predates``: no token from before a revocation outlives it, and none from after
it dies of it. Instants the broker stores (a code's or a refresh-token family's ``created_at``) are
compared with R itself. The options weighed: docs/decisions/0007-revocation-cut-off-in-whole-seconds.md.
"""

from __future__ import annotations

import datetime as dt
import math


def cutoff(not_before: dt.datetime) -> int:
    """The first whole-second ``iat`` a token may carry and outlive a revocation at ``not_before``."""
    return math.floor(not_before.timestamp()) + 1


def predates(iat: int, not_before: dt.datetime | None) -> bool:
    """Whether a token with this ``iat`` was issued before the user's revocation (and so is dead)."""
    return not_before is not None and iat < cutoff(not_before)


def issued_at(now: dt.datetime, not_before: dt.datetime | None) -> int:
    """The ``iat`` of a token signed now for a user whose latest revocation is ``not_before``."""
    iat = math.floor(now.timestamp())
    return iat if not_before is None else max(iat, cutoff(not_before))
