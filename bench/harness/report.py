"""Print rows as they come (one line per run) and as one markdown table at the end."""

from __future__ import annotations

import math
import os

from bench.harness.stats import Row, Run

HEADER = ("| target | workers | clients | scenario | ok/s (median) | spread | runs /s | p50 ms | p95 ms | p99 ms "
          "| errors | server CPU s | server+db CPU ms/ok | db CPU ms/ok | peak RSS MiB | db CPU s | gen busy "
          "| other CPU s |")


def run_line(row: Row, number: int, run: Run) -> str:
    db = f"  db cpu {run.db_cpu_s:5.2f} s" if run.db_cpu_s is not None else ""
    return (f"  {row.target:18} w{row.workers:<2} c{row.clients:<3} {row.scenario:14} run {number}: "
            f"{run.rate:8.1f}/s  p50 {run.p50_ms:6.1f}  p95 {run.p95_ms:6.1f}  p99 {run.p99_ms:7.1f} ms  "
            f"err {run.errors}  cpu {run.server_cpu_s:5.2f} s  rss {run.server_rss_mib:5.0f} MiB{db}  "
            f"gen {run.generator_busy * 100:3.0f} %  other {run.other_cpu_s:4.2f} s  load {os.getloadavg()[0]:.2f}"
            + (f"\n    first error: {next(iter(run.error_samples))}" if run.error_samples else ""))


def _num(value: float, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def table_line(row: Row) -> str:
    runs = " / ".join(f"{r.rate:,.0f}" for r in row.runs)
    scenario = row.scenario + (f" ({row.note})" if row.note else "")
    return (f"| {row.target} | {row.workers} | {row.clients} | {scenario} | **{_num(row.median_rate)}** | "
            f"{row.spread()} | {runs} | {_num(row.median('p50_ms'))} | {_num(row.median('p95_ms'))} | "
            f"{_num(row.median('p99_ms'))} | {row.errors} | {_num(row.median('server_cpu_s'), 2)} | "
            f"{_num(row.cpu_ms_per_ok, 2)} | {_num(row.db_cpu_ms_per_ok, 2)} | {_num(row.peak_rss, 0)} | "
            f"{_num(row.median('db_cpu_s'), 2)} | "
            f"{_num(row.median('generator_busy') * 100, 0)} % | {_num(row.median('other_cpu_s'), 2)} |")


def markdown(rows: list[Row]) -> str:
    separator = "|" + "---|" * (HEADER.count("|") - 1)
    return "\n".join([HEADER, separator, *(table_line(row) for row in rows)])


def error_lines(rows: list[Row]) -> list[str]:
    """What the errors were, per row that had any (the first few kinds)."""
    lines = []
    for row in rows:
        for what, count in list(row.error_samples().items())[:3]:
            lines.append(f"- errors, {row.target} w{row.workers} c{row.clients} {row.scenario}: {count} x `{what}`")
    return lines


def ratio(numerator: Row | None, denominator: Row | None) -> str:
    """``numerator``'s median rate as a % of ``denominator``'s, then the same from CPU per request."""
    if numerator is None or denominator is None or not denominator.median_rate:
        return "n/a"
    by_cpu = denominator.cpu_ms_per_ok / numerator.cpu_ms_per_ok * 100
    return f"{numerator.median_rate / denominator.median_rate * 100:.0f} % (by CPU per request: {by_cpu:.0f} %)"
