"""The least a refresh grant with rotation can do, as a FastAPI app on uvicorn like the broker:
parse the form, ONE rotation statement in its own transaction, ONE ES256 access-token signature.

No client authentication, no family tracking beyond the swap, no user, policy or audit: the rate
this reaches on a database is the ceiling the broker's refresh grant is measured against
(bench/RESULTS.md). The table has the shape of the broker's ``refresh_token_families`` without its
foreign key, under its own name (``TABLE``), in the same database; the engine comes from the
broker's own ``make_engine`` (same driver, pool and SQLite pragmas).

    BENCH_BARE_DATABASE_URL=... BENCH_BARE_KEY=key.pem BENCH_BARE_ISSUER=http://127.0.0.1:PORT \\
        uvicorn --factory bench.bare.refresh_app:create_app --workers N
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import time
import uuid
from pathlib import Path

import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Column, MetaData, Table, bindparam, update
from starlette.concurrency import run_in_threadpool

from broker.storage.db import make_engine
from broker.storage.models import RefreshTokenFamily

TABLE = "bench_bare_refresh_families"


def table(metadata: MetaData) -> Table:
    """``refresh_token_families``' columns, types, keys and indexes, without the foreign key to users."""
    source = RefreshTokenFamily.__table__
    return Table(TABLE, metadata, *(Column(c.name, c.type, primary_key=c.primary_key, unique=c.unique,
                                           index=c.index, nullable=c.nullable) for c in source.columns))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_app() -> FastAPI:
    engine = make_engine(os.environ["BENCH_BARE_DATABASE_URL"])
    key = Path(os.environ["BENCH_BARE_KEY"]).read_bytes()
    issuer = os.environ["BENCH_BARE_ISSUER"]
    families = table(MetaData())
    rotate = (update(families)
              .where(families.c.current_hash == bindparam("old"), families.c.revoked_at.is_(None))
              .values(current_hash=bindparam("new"), generation=families.c.generation + 1,
                      last_used_at=bindparam("now"))
              .returning(families.c.id, families.c.client_id, families.c.user_id, families.c.resource,
                         families.c.scope))
    app = FastAPI(openapi_url=None)

    def swap(presented: str, fresh: str) -> object:
        with engine.begin() as connection:
            return connection.execute(rotate, {"old": digest(presented), "new": digest(fresh),
                                               "now": dt.datetime.now(dt.UTC)}).first()

    @app.get("/readyz")
    async def ready() -> dict:
        return {"status": "ok"}

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        presented, fresh = str(form.get("refresh_token", "")), secrets.token_urlsafe(32)
        row = await run_in_threadpool(swap, presented, fresh)
        if row is None:
            return JSONResponse({"error": "invalid_grant"}, 400)
        now = int(time.time())
        access = jwt.encode({"iss": issuer, "sub": row.user_id, "aud": row.resource, "client_id": row.client_id,
                             "scope": row.scope, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())},
                            key, algorithm="ES256", headers={"typ": "at+jwt", "kid": "bare"})
        return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": 300,
                             "refresh_token": fresh, "scope": row.scope}, headers={"cache-control": "no-store"})

    return app
