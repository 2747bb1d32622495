"""The one value a connector hands to the rest of the broker: a verified upstream login."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Identity:
    """A verified upstream login. Only produced after every ID-token check passed.

    ``subject`` is stable at ``idp_id`` (``sub`` for generic OIDC, ``oid`` for Entra ID), so
    (``idp_id``, ``subject``) names a user; ``email`` may change and is not an identifier.
    ``claims`` is a read-only copy of the verified ID token claims. ``upstream_refresh_token`` is
    kept only to be stored encrypted; ``repr`` leaves it (and the raw claims) out.
    """

    idp_id: str
    subject: str
    email: str | None
    email_verified: bool | None
    name: str | None
    groups: tuple[str, ...]
    claims: Mapping[str, Any] = field(repr=False)
    auth_time: int | None
    acr: str | None
    amr: tuple[str, ...]
    upstream_refresh_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "claims", MappingProxyType(dict(self.claims)))
