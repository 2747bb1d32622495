"""The HTTP surface: the only package that imports FastAPI/Starlette.

``create_app`` assembles routers and middleware around a ``BrokerState`` that the
composition root (``broker.app``) built; nothing here chooses implementations.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy import exc as sa
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp

from broker import __version__, bundled
from broker.oauth.metadata import paths_for
from broker.storage.db import DatabaseError, first_line
from broker.web import admin_api, authorize, errors, health, metrics, shutdown, signals, token, userinfo
from broker.web.admin import router as admin_console
from broker.web.cors import PublicCors
from broker.web.engine import BrokerApp, mount_front
from broker.web.middleware import BodySizeLimit, RequestContext
from broker.web.ratelimit import RateLimit, limiter_for
from broker.web.routes import mount_first
from broker.web.state import BrokerState

log = logging.getLogger("broker.web")


def create_app(state: BrokerState, fallback: ASGIApp | None = None) -> BrokerApp:
    """The broker's ASGI app. ``fallback`` (dev mode's demo MCP server) answers the paths no broker
    route matches; its lifespan runs inside the broker's."""
    app = BrokerApp(title="mcp-auth-broker", version=__version__,
                  description="OAuth 2.1 authorization broker for the Model Context Protocol",
                  docs_url=None, redoc_url=None, lifespan=_lifespan(state, fallback))
    app.state.broker = state
    errors.install(app)
    discovery_paths = paths_for(urlsplit(state.settings.issuer).path)
    if state.testidp is not None:  # dev only; matched after the token side (mount_first puts each router ahead)
        from broker.web import testidp
        mount_first(app, testidp.router)
    mount_first(app, token.router)  # matched first
    app.mount("/static", StaticFiles(directory=bundled.STATIC), name="static")  # the CSP forbids inline styles
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(authorize.router)
    app.include_router(userinfo.router)
    app.include_router(admin_api.router)
    app.include_router(admin_console)
    app.include_router(signals.router)
    if state.settings.scim.enabled:  # SCIM's models cost ~8 MiB per worker: loaded only where SCIM serves
        from broker.web import scim
        app.include_router(scim.router)
    app.add_exception_handler(admin_api.ApiError, lambda request, exc: exc.response)
    if fallback is not None:
        app.mount("/", fallback)
    limiter = limiter_for(state.settings)
    mount_front(app, state, discovery_paths, limiter)
    if limiter is not None:  # inside CORS, so a browser client can read its 429
        app.add_middleware(RateLimit, limiter=limiter,
                           refused=state.metrics.count_rate_limited if state.metrics is not None else None)
    app.add_middleware(PublicCors, paths={*discovery_paths, "/jwks", "/token", "/revoke", "/register",
                                          "/userinfo"},
                       prefixes=("/.well-known/",))
    app.add_middleware(BodySizeLimit, max_bytes=state.settings.server.max_body_bytes)
    app.add_middleware(RequestContext)
    if state.metrics is not None:  # outermost: times everything, 413s and 429s included
        app.add_middleware(metrics.RequestMetrics, metrics=state.metrics)
    if state.tracing is not None:  # around the front too: every request is a span
        app.wrap(state.tracing.middleware)
    return app


def _lifespan(state: BrokerState, fallback: ASGIApp | None) -> Any:
    router = getattr(fallback, "router", None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The protocol core runs in threads; more of them than the work can use only fight over the GIL.
        anyio.to_thread.current_default_thread_limiter().total_tokens = state.settings.server.threads
        # Start-up's long-lived objects (modules, routes, models) are frozen, so full collections never rescan
        # them in the middle of requests (docs/decisions/0011-freeze-start-up-objects.md).
        gc.collect()
        gc.freeze()
        drain = shutdown.Plan.of(state.settings.server).drain
        try:
            with shutdown.drain_on_sigterm(drain, lambda: _stop_being_ready(state), asyncio.get_running_loop()):
                async with _serving(state, router, fallback):
                    yield
        finally:
            gc.unfreeze()  # an app that stops inside a longer-lived process (tests) leaves collectable garbage

    return lifespan


def _stop_being_ready(state: BrokerState) -> None:
    state.shutting_down = True


@asynccontextmanager
async def _serving(state: BrokerState, router: Any, fallback: ASGIApp | None) -> AsyncIterator[None]:
    """What runs while the app serves: metrics, the hot lane, the periodic jobs, the fallback's lifespan."""
    async with _metrics_running(state), _tracing_running(state), _hot_lane(state), \
            anyio.create_task_group() as tasks:
        for interval, job in state.periodic:
            tasks.start_soon(_every, interval, job)
        if state.upstream_check is not None and state.upstream_check.enabled:  # says whether the check can run
            tasks.start_soon(state.upstream_check.report_capabilities, state.upstream_check.connectors)
        if router is not None:
            async with router.lifespan_context(fallback):
                yield
        else:
            yield
        tasks.cancel_scope.cancel()


@asynccontextmanager
async def _hot_lane(state: BrokerState) -> AsyncIterator[None]:
    """The hot lane's connections close with the app (PostgreSQL: a goodbye to each, not a dropped socket)."""
    try:
        yield
    finally:
        await state.database.hot.close()


@asynccontextmanager
async def _metrics_running(state: BrokerState) -> AsyncIterator[None]:
    """Metrics for as long as the app serves: the separate port (when this process holds it), then
    closing (this worker's live gauges go away)."""
    if state.metrics is None:
        yield
        return
    state.metrics.start()
    try:
        yield
    finally:
        state.metrics.close()


@asynccontextmanager
async def _tracing_running(state: BrokerState) -> AsyncIterator[None]:
    """At shutdown: stop tracing upstream calls, and export the spans still queued."""
    try:
        yield
    finally:
        if state.tracing is not None:
            state.tracing.close()


async def _every(interval: float, job: Any) -> None:
    """Run ``job`` every ``interval`` seconds for as long as the app serves; a failed round is logged and
    the job tried again next time. While the database is down the job fails every round: that is one
    warning when it starts failing and one line when it works again, not a traceback each second."""
    name = getattr(job, "__name__", repr(job))
    failed_rounds = 0
    while True:
        await anyio.sleep(interval)
        try:
            await (job() if inspect.iscoroutinefunction(job) else run_in_threadpool(job))
        except (sa.OperationalError, sa.InterfaceError, sa.TimeoutError, DatabaseError) as exc:
            if not failed_rounds:
                log.warning("periodic job %s failed, database unavailable: %s", name, first_line(exc))
            failed_rounds += 1
            continue
        except Exception:  # noqa: BLE001 - a failed round is logged and retried next time
            log.exception("periodic job %s failed", name)
            failed_rounds += 1
            continue
        if failed_rounds:
            log.warning("periodic job %s works again after %d failed rounds", name, failed_rounds)
            failed_rounds = 0
