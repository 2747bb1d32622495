"""Measure one cell: a warm-up run, then ``repeats`` timed runs, each with /proc accounting.

A target is what is measured (a broker, the bare endpoint, oidc-provider): its name, loopback ports
and server pids. A scenario turns a target into virtual clients; ``budget`` tells it how many
iterations to prepare consumables for (codes, assertions), sized from the warm-up's rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bench.harness.http1 import Links
from bench.harness.load import LoadResult, VirtualClient, drive
from bench.harness.procstat import TreeAccounting, Usage, machine_busy_seconds, tree
from bench.harness.report import run_line
from bench.harness.stats import Row, Run


class Target(Protocol):
    name: str
    store: str
    workers: str
    ports: list[int]

    def server_pids(self) -> list[int]: ...

    def db_pids(self) -> list[int]: ...


class Scenario(Protocol):
    name: str
    consumes: bool  # True: each iteration uses up something prepared in advance (a code, an assertion)

    async def clients(self, target: Target, links: Links, n: int, budget: int) -> Sequence[VirtualClient]: ...


WARMUP_BUDGET = 2000


@dataclass(frozen=True)
class Plan:
    duration: float = 4.0  # seconds per timed run
    warmup: float = 1.0
    repeats: int = 3
    max_requests: int = 40_000  # iterations per run, whatever the duration


async def _run(target: Target, scenario: Scenario, n: int, plan: Plan, duration: float,
               budget: int) -> tuple[LoadResult, Usage, Usage | None, float, float]:
    links = Links(target.ports)
    try:
        clients = await scenario.clients(target, links, n, budget)
        db_pids = target.db_pids()
        with TreeAccounting(target.server_pids()) as server, TreeAccounting(db_pids) as db:
            cpu, busy = time.process_time(), machine_busy_seconds()
            result = await drive(clients, duration, min(budget, plan.max_requests))
            cpu, busy = time.process_time() - cpu, machine_busy_seconds() - busy
        db_usage = db.usage() if db_pids else None
        other = busy - cpu - server.usage().cpu_s - (db_usage.cpu_s if db_usage else 0.0)
        return result, server.usage(), db_usage, cpu, other
    finally:
        await links.close()


def lost(target: Target, before: set[int]) -> str | None:
    """Which server processes seen before a run are gone after it (a crash: uvicorn replaces dead workers)."""
    gone = before - set(tree(target.server_pids()))
    return f"server process {', '.join(map(str, sorted(gone)))} exited during the run" if gone else None


@dataclass
class Cell:
    """A (target, scenario, clients) cell being measured: warmed up, with its runs so far in ``row``."""

    target: Target
    scenario: Scenario
    n: int
    row: Row
    budget: int
    before: set[int]


def warm_up(target: Target, scenario: Scenario, n: int, plan: Plan, suite: str, note: str = "") -> Cell:
    """The warm-up run, which also sizes the consumables of the timed runs."""
    row = Row(suite, target.name, target.store, target.workers, n, scenario.name, note=note)
    before = set(tree(target.server_pids()))
    warm_budget = min(plan.max_requests, WARMUP_BUDGET + 20 * n) if scenario.consumes else plan.max_requests
    warm, *_ = asyncio.run(_run(target, scenario, n, plan, plan.warmup, warm_budget))
    if warm.errors:  # not in the table, but worth knowing (first sight of users is in the warm-up)
        print(f"  warm-up: {warm.errors} errors, e.g. {next(iter(warm.error_samples), '?')}", flush=True)
    budget = plan.max_requests
    if scenario.consumes:  # enough for 1.5x the warm-up's rate over a run; a run that uses all ends early
        budget = min(budget, int(max(warm.rate, 50) * plan.duration * 1.5) + 20 * n)
    return Cell(target, scenario, n, row, budget, before)


def timed_run(cell: Cell, plan: Plan) -> bool:
    """One timed run added to the cell's row; False (and a note on the row) when a server process died."""
    result, server, db, generator_cpu, other = asyncio.run(_run(cell.target, cell.scenario, cell.n, plan,
                                                                plan.duration, cell.budget))
    cell.row.runs.append(Run.of(result, server, db, generator_cpu, other))
    print(run_line(cell.row, len(cell.row.runs), cell.row.runs[-1]), flush=True)
    crash = lost(cell.target, cell.before)
    if crash:
        cell.row.note = f"CRASH in run {len(cell.row.runs)}: {crash}"
        print(f"  !! {cell.row.note}", flush=True)
    return crash is None


def measure(target: Target, scenario: Scenario, n: int, plan: Plan, suite: str, note: str = "") -> Row:
    """Warm-up and timed runs; stops early, with a note on the row, when a server process dies."""
    cell = warm_up(target, scenario, n, plan, suite, note)
    for _ in range(plan.repeats):
        if not timed_run(cell, plan):
            break
    return cell.row


def interleaved(cells: Sequence[Cell], plan: Plan) -> list[Row]:
    """The cells' timed runs in turns (run 1 of each, then run 2 of each, ...): whatever else the machine
    does in these minutes weighs on every cell alike, so ratios between their rows hold better."""
    alive = list(cells)
    for _ in range(plan.repeats):
        alive = [cell for cell in alive if timed_run(cell, plan)]
    return [cell.row for cell in cells]
