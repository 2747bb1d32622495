"""FastAPI dependencies as ``Annotated`` aliases: routes declare what they need by type."""

from __future__ import annotations

from collections.abc import Iterator
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


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back on error."""
    with request.app.state.broker.database.transaction() as session:
        yield session


State = Annotated[BrokerState, Depends(get_state)]
DbSession = Annotated[Session, Depends(get_session, scope="function")]  # commits before the response
