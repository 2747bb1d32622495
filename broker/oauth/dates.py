"""NumericDate claims (RFC 7519 §2) as instants: a JWT may carry any number, a datetime holds years 1-9999."""

from __future__ import annotations

import datetime as dt
import math


def instant(value: object) -> dt.datetime | None:
    """The UTC instant ``value`` seconds after the epoch; None unless a finite number a datetime can hold."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, ValueError, OSError):
        return None
