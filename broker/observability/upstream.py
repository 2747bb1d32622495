"""What metrics and traces read of a finished call to a third party.

``broker.federation.calls.UpstreamCall`` is the one such value; this room does not import federation, so
the composition root subscribes the observers to it and they see it through this protocol.
"""

from __future__ import annotations

from typing import Protocol


class UpstreamCallLike(Protocol):
    @property
    def peer_kind(self) -> str: ...  # idp, id_jag_issuer, signal_sender, cimd
    @property
    def peer(self) -> str: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def outcome(self) -> str: ...  # 2xx, 3xx, 4xx, 5xx, timeout, unreachable, too_large, refused
    @property
    def started_at(self) -> float: ...  # time.time() at the start
    @property
    def seconds(self) -> float: ...
