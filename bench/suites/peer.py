"""oidc-provider's refresh, client credentials and introspection, the same load as the broker's (bench/peer/)."""

from __future__ import annotations

from bench.harness.runner import Plan, measure
from bench.harness.stats import Row
from bench.peer.target import PeerTarget, unavailable
from bench.scenarios.client_credentials import ClientCredentials
from bench.scenarios.introspection import Introspection
from bench.scenarios.refresh import Refresh


def run(plan: Plan, clients: list[int], scenarios: list[str]) -> list[Row]:
    reason = unavailable()
    if reason:
        print(f"peer: skipped: {reason}", flush=True)
        return []
    rows: list[Row] = []
    with PeerTarget() as target:
        for scenario in (Refresh(), ClientCredentials(), Introspection()):
            if scenario.name in scenarios:
                rows += [measure(target, scenario, n, plan, "peer") for n in clients]
    return rows
