"""Routes on the request path of every agent: documented like any FastAPI route, served without its layers.

FastAPI's per-request machinery (dependency solving, the request handler, and ``include_router``'s
matching, which walks each included router in turn) costs more than the token endpoint's own work
outside the database. The token-side endpoints are therefore ``PlainRoute``s: ``endpoint(request) ->
Response`` as in Starlette, still ``APIRoute``s for the OpenAPI document (summary, body, errors), and
placed first in the application's route list by ``create_app`` (``mount_first``), so they are matched
before any included router is walked. bench/RESULTS.md has the before and after.
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
