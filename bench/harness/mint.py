"""Refresh-token families made through the token engine's own code, for in-process benches."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from broker.oauth.engine import Call, families
from broker.oauth.engine.context import Grant
from broker.oauth.params import Params
from broker.storage.models import utcnow


async def refresh_family(state: Any, *, client_id: str, user_id: str, resource: str, scopes: Iterable[str]) -> str:
    """A new family's refresh token, started in one hot-lane transaction as a code exchange would."""
    async with state.database.hot.write() as tx:
        grant = Grant(state.oauth.engine, tx, Call(Params([]), None, None, utcnow()))
        started = await families.start(grant, client_id=client_id, user_id=user_id, resource=resource,
                                       scopes=scopes, auth_time=None, acr=None, oidc_scope=None)
    return started.token
