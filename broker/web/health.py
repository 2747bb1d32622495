"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from broker.keys import schedule
from broker.storage import signing_keys
from broker.storage.db import DatabaseError
from broker.storage.models import utcnow
from broker.storage.schema import HEAD
from broker.web.deps import State

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable, schema current, a signing key present",
            responses={503: {"description": "Not ready; `checks` names what failed"}})
def readyz(state: State) -> JSONResponse:
    checks = {"database": "ok", "schema": "ok", "signing_key": "ok"}
    try:
        revision = state.database.schema_revision()
        if revision != HEAD:
            checks["schema"] = f"at {revision}, needs {HEAD} (run `broker db upgrade`)"
        else:
            with state.database.sessions() as session:
                keys = signing_keys.list_keys(session, state.keyring.purpose)
            if schedule.signing_key(keys, utcnow()) is None:
                checks["signing_key"] = "no active signing key"
    except DatabaseError as exc:
        checks["database"] = str(exc)
        checks["schema"] = checks["signing_key"] = "unknown"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503, headers={"cache-control": "no-store"})
