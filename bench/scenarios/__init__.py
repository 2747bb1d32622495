"""Load scenarios: each turns a target into virtual clients (see bench/harness/runner.py)."""
