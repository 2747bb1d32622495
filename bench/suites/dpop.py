"""A DPoP refresh beside a bearer refresh: the same broker, the same clients count, their timed runs in turns
(``interleaved``), so the ratio holds whatever else the machine does in those minutes. 1 worker per store."""

from __future__ import annotations

from bench.harness.runner import Plan, interleaved, warm_up
from bench.harness.stats import Row
from bench.scenarios import refresh, refresh_dpop
from bench.targets import broker
from bench.targets.fake_idp import FakeIdp
from tests.support.postgres import PostgresServer


def run(stores: list[str], pg: PostgresServer | None, idp: FakeIdp, plan: Plan, clients: list[int]) -> list[Row]:
    rows: list[Row] = []
    for store in stores:
        if store == "postgresql" and pg is None:
            continue
        setup = broker.create(store, idp, pg if store == "postgresql" else None)
        print(f"== DPoP beside bearer on {store}: {setup.database_url}", flush=True)
        try:
            with broker.BrokerTarget(setup, 1) as target:
                for n in clients:
                    target.revive()
                    cells = [warm_up(target, refresh.Refresh(), n, plan, "broker"),
                             warm_up(target, refresh_dpop.RefreshDpop(), n, plan, "broker")]
                    rows += interleaved(cells, plan)
        finally:
            broker.remove(setup, pg if store == "postgresql" else None)
    return rows
