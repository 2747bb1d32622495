"""Routes that every sign-in crosses (the test IdP's) and registration: documented like any FastAPI route, served
without FastAPI's dependency solving.

``PlainRoute``: ``endpoint(request) -> Response`` as in Starlette, still an ``APIRoute`` for the OpenAPI
document (summary, body, errors), placed first in the application's route list by ``create_app``
(``mount_first``), so it is matched before any included router is walked. The token side itself is not
on FastAPI at all (``broker.web.engine``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import request_response


class PlainRoute(APIRoute):
    """An ``APIRoute`` whose endpoint takes the ``Request`` alone and returns a ``Response``: no dependencies."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = request_response(endpoint)


def plain_router(**kwargs: Any) -> APIRouter:
    return APIRouter(route_class=PlainRoute, **kwargs)


def mount_first(app: FastAPI, router: APIRouter) -> None:
    """Put ``router``'s routes at the head of ``app``'s own route list (they keep their OpenAPI entries)."""
    assert all(isinstance(route, PlainRoute) for route in router.routes), "only PlainRoutes go first"
    app.router.routes[0:0] = router.routes
