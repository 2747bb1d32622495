"""FastAPI dependencies as ``Annotated`` aliases: routes declare what they need by type."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from broker.web.state import BrokerState


def state_of(request: Request) -> BrokerState:
    """The broker's state, for routes that take the request alone (``broker.web.routes.PlainRoute``)."""
    state: BrokerState = request.app.state.broker
    return state


async def get_state(request: Request) -> BrokerState:
    # async, so FastAPI calls it on the event loop: a sync dependency costs a thread hop per request
    return state_of(request)


State = Annotated[BrokerState, Depends(get_state)]
# The admin API's routes take a ``session`` that their route class (``admin_api.common.ColdRoute``) opens on the
# route's own worker thread; it is no dependency.
DbSession = Session
