"""The targets' comparisons, interleaved: the broker, oidc-provider and the bare endpoints run side by side.

All of them serve at once (pinned to the server core, idle while another is measured). For each
client count, every cell of a group is warmed up, then their timed runs take turns: run 1 of each
cell, run 2 of each, and so on. Load from elsewhere on the machine then weighs on both sides of each
ratio alike, which sequential suites (the broker's matrix, then the peer) cannot promise.

Groups: on SQLite, the broker's refresh, ID-JAG, client credentials and introspection beside
oidc-provider's refresh, client credentials and introspection and both bare refresh endpoints; on
PostgreSQL, the broker's refresh beside the raw bare endpoint on the same database. 1 worker.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.bare.target import BareTarget
from bench.harness.runner import Cell, Plan, Scenario, Target, interleaved, warm_up
from bench.harness.stats import Row
from bench.peer.target import PeerTarget, unavailable
from bench.scenarios import client_credentials, id_jag, introspection, refresh
from bench.targets import broker
from bench.targets.fake_idp import FakeIdp
from tests.support.postgres import PostgresServer

BROKER_SCENARIOS: list[Callable[[], Scenario]] = [
    refresh.Refresh, id_jag.IdJag, client_credentials.ClientCredentials, introspection.Introspection]
PEER_SCENARIOS: list[Callable[[], Scenario]] = [
    refresh.Refresh, client_credentials.ClientCredentials, introspection.Introspection]


def run(stores: list[str], pg: PostgresServer | None, idp: FakeIdp, plan: Plan, clients: list[int]) -> list[Row]:
    rows: list[Row] = []
    if "sqlite" in stores:
        rows += _group("sqlite", None, idp, plan, clients, with_peer=True)
    if "postgresql" in stores and pg is not None:
        rows += _group("postgresql", pg, idp, plan, clients, with_peer=False)
    return rows


def _group(store: str, pg: PostgresServer | None, idp: FakeIdp, plan: Plan, clients: list[int],
           with_peer: bool) -> list[Row]:
    reason = unavailable() if with_peer else None
    if reason:
        print(f"head-to-head: oidc-provider skipped: {reason}", flush=True)
    setup = broker.create(store, idp, pg)
    print(f"== head to head on {store}: {setup.database_url}", flush=True)
    rows: list[Row] = []
    try:
        with broker.BrokerTarget(setup, 1) as mine, \
                BareTarget(store, setup.database_url, setup.directory, 1, setup.db_root, "raw") as raw, \
                BareTarget(store, setup.database_url, setup.directory, 1, setup.db_root, "fastapi") as fast:
            if with_peer and not reason:
                with PeerTarget() as peer:
                    rows += _turns(mine, [raw, fast], peer, plan, clients)
            else:
                rows += _turns(mine, [raw], None, plan, clients, only_refresh=True)
    finally:
        broker.remove(setup, pg)
    return rows


def _turns(mine: broker.BrokerTarget, bare: list[BareTarget], peer: PeerTarget | None, plan: Plan,
           clients: list[int], only_refresh: bool = False) -> list[Row]:
    rows: list[Row] = []
    for n in clients:
        plan_for: list[tuple[Target, Scenario, str]] = [
            (mine, make(), "broker") for make in (BROKER_SCENARIOS[:1] if only_refresh else BROKER_SCENARIOS)]
        plan_for += [(target, refresh.Refresh(), f"bare {target.flavour}") for target in bare]
        if peer is not None:
            plan_for += [(peer, make(), "peer") for make in PEER_SCENARIOS]
        mine.revive()
        cells: list[Cell] = [warm_up(target, scenario, n, plan, suite) for target, scenario, suite in plan_for]
        rows += interleaved(cells, plan)
    return rows
