"""One row of the results table: the runs of one (target, scenario, clients) cell, summarised."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.harness.load import LoadResult
from bench.harness.procstat import Usage


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(q / 100 * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Run:
    rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    ok: int
    errors: int
    server_cpu_s: float
    server_rss_mib: float
    db_cpu_s: float | None
    generator_busy: float  # the generator's CPU time over the run's wall time: near 1.0, it is the limit
    other_cpu_s: float  # CPU the rest of the machine used meanwhile (other people's work): interference
    error_samples: dict[str, int]

    @classmethod
    def of(cls, result: LoadResult, server: Usage, db: Usage | None, generator_cpu_s: float,
           other_cpu_s: float = 0.0) -> Run:
        latencies = sorted(result.latencies)
        return cls(result.rate, percentile(latencies, 50) * 1000, percentile(latencies, 95) * 1000,
                   percentile(latencies, 99) * 1000, result.ok, result.errors, server.cpu_s, server.peak_rss_mib,
                   db.cpu_s if db else None, generator_cpu_s / result.elapsed if result.elapsed else 0.0,
                   max(other_cpu_s, 0.0), result.error_samples)


@dataclass
class Row:
    suite: str  # broker, bare, peer, scale-out, ceiling
    target: str  # e.g. "broker sqlite"
    store: str
    workers: str
    clients: int
    scenario: str
    runs: list[Run] = field(default_factory=list)
    note: str = ""

    @property
    def median_rate(self) -> float:
        return statistics.median(r.rate for r in self.runs) if self.runs else 0.0

    def spread(self) -> str:
        """min-max of the runs' rates as a percentage of the median."""
        if len(self.runs) < 2 or not self.median_rate:
            return "-"
        rates = [r.rate for r in self.runs]
        return f"±{(max(rates) - min(rates)) / 2 / self.median_rate * 100:.0f} %"

    def median(self, name: str) -> float:
        values = [getattr(r, name) for r in self.runs if getattr(r, name) is not None]
        return statistics.median(values) if values else float("nan")

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    def error_samples(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for run in self.runs:
            for what, count in run.error_samples.items():
                merged[what] = merged.get(what, 0) + count
        return merged

    @property
    def cpu_ms_per_ok(self) -> float:
        """Server and database CPU per successful iteration: what a request costs on the server core,
        much less disturbed than the rate by other work on the machine."""
        ok = sum(r.ok for r in self.runs)
        cpu = sum(r.server_cpu_s + (r.db_cpu_s or 0.0) for r in self.runs)
        return cpu / ok * 1000 if ok else float("nan")

    @property
    def db_cpu_ms_per_ok(self) -> float:
        """The database's share of ``cpu_ms_per_ok`` (PostgreSQL's processes; SQLite runs in the server)."""
        ok = sum(r.ok for r in self.runs)
        cpu = sum(r.db_cpu_s for r in self.runs if r.db_cpu_s is not None)
        return cpu / ok * 1000 if ok and any(r.db_cpu_s is not None for r in self.runs) else float("nan")

    @property
    def peak_rss(self) -> float:
        return max((r.server_rss_mib for r in self.runs), default=0.0)
