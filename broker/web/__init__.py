"""The HTTP surface: the only package that imports FastAPI/Starlette.

``create_app`` assembles routers and middleware around a ``BrokerState`` that the
composition root (``broker.app``) built; nothing here chooses implementations.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from broker import __version__
from broker.web import errors, health, jwks
from broker.web.middleware import BodySizeLimit, RequestContext
from broker.web.state import BrokerState
from broker.web.templates import STATIC_DIR


def create_app(state: BrokerState) -> FastAPI:
    app = FastAPI(title="mcp-auth-broker", version=__version__,
                  description="OAuth 2.1 authorization broker for the Model Context Protocol",
                  docs_url=None, redoc_url=None)
    app.state.broker = state
    errors.install(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(health.router)
    app.include_router(jwks.router)
    if state.testidp is not None:
        from broker.web import testidp
        app.include_router(testidp.router, prefix="/testidp")
    app.add_middleware(BodySizeLimit, max_bytes=state.settings.server.max_body_bytes)
    app.add_middleware(RequestContext)
    return app
