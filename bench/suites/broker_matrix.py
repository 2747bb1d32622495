"""The broker's scenarios on each store, worker count and client count, and the bare endpoint beside it.

One broker setup (database, clients, users) per store; `broker serve` is restarted for each worker
count, with fresh scenario state (new refresh-token families, new token pools). Right after the
broker on a store and worker count, the bare refresh endpoint runs on the same database with the same
worker count, so "broker refresh as a % of bare" compares numbers from the same minutes.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.bare.target import BareTarget
from bench.harness.runner import Plan, Scenario, measure
from bench.harness.stats import Row
from bench.scenarios import (
    client_credentials,
    code_exchange,
    id_jag,
    introspection,
    login,
    metadata,
    refresh,
    refresh_dpop,
)
from bench.targets import broker
from bench.targets.fake_idp import FakeIdp
from tests.support.postgres import PostgresServer

SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "refresh": refresh.Refresh,
    "refresh-dpop": refresh_dpop.RefreshDpop,
    "client-credentials": client_credentials.ClientCredentials,
    "code-exchange": code_exchange.CodeExchange,
    "id-jag": id_jag.IdJag,
    "introspect": introspection.Introspection,
    "jwks": metadata.jwks,
    "discovery": metadata.discovery,
    "full-login": login.Login,
}


def run(store: str, pg: PostgresServer | None, idp: FakeIdp, plan: Plan, scenarios: list[str],
        workers: list[int], clients: list[int], with_bare: bool) -> list[Row]:
    setup = broker.create(store, idp, pg)
    print(f"== broker on {store}: {setup.database_url}", flush=True)
    rows: list[Row] = []
    try:
        for count in workers:
            with broker.BrokerTarget(setup, count) as target:
                for name in scenarios:
                    scenario = SCENARIOS[name]()
                    for n in clients:
                        target.revive()  # after a crash in the previous cell (seen and noted there)
                        rows.append(measure(target, scenario, n, plan, "broker"))
            if with_bare:
                for flavour in ("raw", "fastapi"):
                    with BareTarget(store, setup.database_url, setup.directory, count, setup.db_root,
                                    flavour) as bare:
                        scenario = refresh.Refresh()
                        rows += [measure(bare, scenario, n, plan, f"bare {flavour}") for n in clients]
    finally:
        broker.remove(setup, pg)
    return rows
