"""Response headers that say how a response may be kept, one name each."""

from __future__ import annotations

NO_STORE = {"cache-control": "no-store"}  # nothing between the broker and the client may keep it
# RFC 6749 §5.1: tokens, credentials or other sensitive information (and so also no HTTP/1.0 cache)
NO_STORE_SENSITIVE = {**NO_STORE, "pragma": "no-cache"}
