"""Groups of measurements the driver (bench/load_runs.py) runs: each returns table rows."""
