"""Liveness and readiness probes for load balancers and orchestrators.

``/readyz`` is on the public port, so it names only the check that failed; why it failed (the database's
error, the schema revision) goes to the log, once each time it changes, and each check's outcome to the
``broker_readiness_check`` metric.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from broker.keys import schedule
from broker.storage import schema, signing_keys
from broker.storage.db import DatabaseError
from broker.storage.models import utcnow
from broker.web.deps import State
from broker.web.headers import NO_STORE
from broker.web.state import BrokerState

router = APIRouter(tags=["operations"])
log = logging.getLogger("broker.web.health")
CHECKS = ("shutdown", "database", "schema", "signing_key")  # in order; a failure skips those after it


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: not shutting down, database reachable, schema current, a signing key "
                               "present", responses={503: {"description": "Not ready; `checks` names the check "
                                                                          "that failed (why: in the log)"}})
def readyz(state: State) -> JSONResponse:
    failed, why = _first_failure(state)
    _report(state, failed, why)
    reached = CHECKS.index(failed) if failed else len(CHECKS)
    checks = {name: "ok" if i < reached else "failed" if i == reached else "not checked"
              for i, name in enumerate(CHECKS)}
    return JSONResponse({"status": "not ready" if failed else "ready", "checks": checks},
                        status_code=503 if failed else 200, headers=NO_STORE)


def _first_failure(state: BrokerState) -> tuple[str | None, str]:
    """The first check that fails, and why (for the log only)."""
    if state.shutting_down:
        return "shutdown", "the process received SIGTERM and is draining"
    try:
        problem = schema.read(state.database).problem()
        if problem:
            return "schema", problem
        with state.database.sessions() as session:
            keys = signing_keys.list_keys(session, state.keyring.purpose)
    except DatabaseError as exc:
        return "database", str(exc)
    if schedule.signing_key(keys, utcnow()) is None:
        return "signing_key", "no active signing key"
    return None, ""


def _report(state: BrokerState, failed: str | None, why: str) -> None:
    """Log a change of readiness (not every probe); set the metric."""
    if (failed, why) != state.readiness:
        if failed:
            log.warning("not ready: %s check failed: %s", failed, why, extra={"check": failed})
        elif state.readiness[0] is not None:
            log.info("ready again (the %s check passes)", state.readiness[0])
        state.readiness = (failed, why)
    if state.metrics is not None:
        reached = CHECKS.index(failed) if failed else len(CHECKS)
        state.metrics.readiness({name: i < reached for i, name in enumerate(CHECKS[:reached + 1])})
