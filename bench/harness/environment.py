"""What a results table was measured on: machine, versions, commit."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=20,  # noqa: S603 - git and node
                              cwd=ROOT, stdin=subprocess.DEVNULL)
        return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def _optional(package: str) -> str:
    try:
        return f"{package} {version(package)}"
    except PackageNotFoundError:
        return f"no {package}"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def commit() -> str:
    """The commit measured: git's HEAD here, or BENCH_COMMIT for a snapshot outside git (`git archive`)."""
    if os.environ.get("BENCH_COMMIT"):
        return f"`{os.environ['BENCH_COMMIT']}` (snapshot of that commit, BENCH_COMMIT)"
    head = _run("git", "rev-parse", "--short", "HEAD")
    changed = _run("git", "status", "--porcelain", "--", "broker", "migrations").splitlines()
    return f"`{head}`" + (f" plus uncommitted changes to {len(changed)} files under broker/" if changed else "")


def load_average() -> str:
    """``uptime``'s load averages (1, 5, 15 minutes)."""
    return " / ".join(f"{load:.2f}" for load in os.getloadavg())


def describe(postgres_version: str | None, oidc_provider: str, load_before: str | None = None) -> list[str]:
    node = _run(shutil.which("node") or "node", "--version") if shutil.which("node") else "not installed"
    return [
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; commit {commit()}",
        f"- machine: {os.cpu_count()} cores ({cpu_model()}), {memory_gib():.0f} GiB; load average (1 / 5 / 15 min) "
        f"before the run {load_before or '?'}, after it {load_average()}",
        f"- Python {platform.python_version()}, uvicorn {version('uvicorn')} ({_optional('uvloop')}, "
        f"{_optional('httptools')}), FastAPI {version('fastapi')}, "
        f"SQLAlchemy {version('sqlalchemy')}, psycopg {version('psycopg')}; node {node}, oidc-provider "
        f"{oidc_provider}; PostgreSQL {postgres_version or 'not run'}",
    ]
