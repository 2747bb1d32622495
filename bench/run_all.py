"""`make bench`: every bench/*.py script in turn (sorted), then the issue 9 load runs (bench/load_runs.py).

    python bench/run_all.py [--quick] [--only NAME,...] [load_runs.py options...]

--quick runs the scripts it knows with small sizes (others with their defaults) and passes --quick to
load_runs.py (a smoke run of a few minutes); any other option goes to load_runs.py (e.g. --scenarios
refresh --stores sqlite). The full run takes about 25 minutes on the 2-core machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# script -> (full-size arguments, --quick arguments); a script not named here runs without arguments
ARGUMENTS: dict[str, tuple[list[str], list[str]]] = {
    "policy_decisions": (["--pin"], ["--pin", "--decisions", "20000", "--runs", "1"]),
    "token_audit_overhead": ([], ["--requests", "300", "--rounds", "1"]),
    "engine_steps": ([], ["--requests", "300", "--rounds", "1"]),
    "admin_pages": ([], ["--users", "1000", "--events", "10000", "--requests", "3"]),
    "id_jag_grants": ([], ["--requests", "300", "--rounds", "1"]),
    "storage_footprint": ([], ["--sign-ins", "16", "--refreshes", "1000"]),
    "load_runs": ([], ["--quick"]),
}


def scripts() -> list[str]:
    """Every bench/*.py but this driver and the soak (`make soak`, 10 minutes), the load runs last."""
    names = sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in ("run_all", "load_runs", "soak", "__init__"))
    return [*names, "load_runs"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", help="scripts to run, comma-separated names without .py (default: all)")
    args, load_run_args = parser.parse_known_args()
    started = time.monotonic()
    for name in args.only.split(",") if args.only else scripts():
        full, quick = ARGUMENTS.get(name, ([], []))
        argv = [sys.executable, str(BENCH / f"{name}.py"), *(quick if args.quick else full)]
        if name == "load_runs":
            argv += load_run_args
        print(f"==> {' '.join(argv[1:])}", flush=True)
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, check=False)  # noqa: S603 - our own scripts
        if done.returncode != 0:
            print(f"==> {name} failed with exit code {done.returncode}", flush=True)
            return done.returncode
    print(f"==> all done in {(time.monotonic() - started) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
