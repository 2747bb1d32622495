"""The one place that turns errors into responses (JSON for APIs; pages come with the OAuth routes)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.storage.db import DatabaseError, first_line
from broker.web.headers import NO_STORE

log = logging.getLogger("broker.web")


def install(app: FastAPI) -> None:
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(DatabaseError)(_database_error)
    # The database went away or could not serve in time (restart, failover, lost connection, pool
    # exhausted): the client should retry, so 503 temporarily_unavailable, never a 500.
    for error in (sa.OperationalError, sa.InterfaceError, sa.TimeoutError):
        app.add_exception_handler(error, _database_unavailable)
    app.add_exception_handler(sa.DataError, _unstorable)
    app.add_exception_handler(Exception, _unexpected)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": _code_for(exc.status_code), "error_description": str(exc.detail)},
                        status_code=exc.status_code, headers={**NO_STORE, **(exc.headers or {})})


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    fields = [".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in exc.errors()]
    return JSONResponse({"error": "invalid_request", "error_description": "; ".join(fields)},
                        status_code=400, headers=NO_STORE)


async def _database_error(request: Request, exc: DatabaseError) -> JSONResponse:
    log.error("database unavailable: %s", exc)
    return JSONResponse({"error": "temporarily_unavailable", "error_description": "database unavailable"},
                        status_code=503, headers={**NO_STORE, "retry-after": "1"})


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # One line: the driver's message, never the statement or its parameters (they may hold token digests).
    log.error("database unavailable on %s %s: %s: %s", request.method, request.url.path,
              type(getattr(exc, "orig", None) or exc).__name__, first_line(exc))
    return JSONResponse({"error": "temporarily_unavailable", "error_description": "database unavailable"},
                        status_code=503, headers={**NO_STORE, "retry-after": "1"})


async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
    # The store refused a value the request carried (PostgreSQL: a NUL character, a number out of range):
    # bad input, and the transaction rolled back. One line, the driver's message without the parameters.
    log.warning("value refused by the database on %s %s: %s", request.method, request.url.path, first_line(exc))
    return JSONResponse({"error": "invalid_request", "error_description": "a value in the request cannot be stored"},
                        status_code=400, headers=NO_STORE)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": "server_error"}, status_code=500, headers=NO_STORE)


def _code_for(status: int) -> str:
    return {404: "not_found", 405: "method_not_allowed", 413: "invalid_request"}.get(
        status, "invalid_request" if 400 <= status < 500 else "server_error")
