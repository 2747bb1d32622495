"""`broker serve --workers 2` with metrics on: every scrape, on either port, reports both workers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker import config
from tests.support.postgres import free_port
from tests.support.processes import BROKER, ServerProcess, run_broker

pytestmark = pytest.mark.e2e
TOKEN = "scrape-" + "0123456789abcdef" * 3
REQUESTS = 40


def families(text: str) -> dict[str, list]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def healthz_count(text: str) -> float:
    return sum(s.value for s in families(text).get("broker_http_requests", [])
               if s.name == "broker_http_requests_total" and s.labels["route"] == "/healthz")


def worker_pids(text: str) -> set[str]:
    return {s.labels["pid"] for s in families(text).get("process_resident_memory_bytes", [])}


def served_per_worker(scratch: Path) -> dict[str, float]:
    """/healthz requests each worker counted, read from its own file in the shared directory."""
    from prometheus_client.mmap_dict import MmapedDict

    [directory] = scratch.iterdir()
    split: dict[str, float] = {}
    for path in directory.glob("counter_*.db"):
        split[path.stem.split("_")[1]] = sum(value for key, value, *_ in MmapedDict.read_all_values_from_file(str(path))
                                            if '"broker_http_requests_total"' in key and '"/healthz"' in key)
    return split


def test_two_workers_are_counted_together(tmp_path: Path) -> None:
    port, metrics_port, scratch = free_port(), free_port(), tmp_path / "tmp"
    scratch.mkdir()
    env = {"BROKER_ISSUER": f"http://127.0.0.1:{port}", "BROKER_DATABASE__URL": f"sqlite:///{tmp_path / 'b.db'}",
           "BROKER_KEYS__KEY_ENCRYPTION_KEY": config.new_kek(), "BROKER_METRICS__ENABLED": "true",
           "BROKER_METRICS__BEARER_TOKEN": TOKEN, "BROKER_METRICS__LISTEN": f"127.0.0.1:{metrics_port}",
           "TMPDIR": str(scratch)}
    assert run_broker("db", "upgrade", env=env).returncode == 0
    server = ServerProcess([*BROKER, "serve", "--workers", "2", "--port", "{port}"], env=env,
                           log_path=tmp_path / "serve.log", port=port)
    auth = {"authorization": f"Bearer {TOKEN}"}
    with server:
        deadline = time.monotonic() + 20
        while len(worker_pids(httpx.get(f"{server.base_url}/metrics", headers=auth).text)) < 2:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        sent = 0
        while sent < REQUESTS or min(served_per_worker(scratch).values(), default=0) == 0:
            assert sent < 50 * REQUESTS, served_per_worker(scratch)  # a new connection each time: both take some
            assert httpx.get(f"{server.base_url}/healthz").status_code == 200
            sent += 1
        split = served_per_worker(scratch)
        scrapes = [httpx.get(f"{server.base_url}/metrics", headers=auth).text for _ in range(6)]
        separate = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", headers=auth)
        assert httpx.get(f"{server.base_url}/metrics").status_code == 401
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").status_code == 401
    assert separate.status_code == 200
    assert len(split) == 2 and sum(split.values()) == sent
    for text in [*scrapes, separate.text]:  # whichever worker answered, it reported the sum of both
        assert healthz_count(text) == sent
        assert worker_pids(text) == set(split)
    assert list(scratch.iterdir()) == []  # the shared directory went with the server
    assert TOKEN not in server.output()
