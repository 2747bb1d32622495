"""Graceful shutdown of ``broker serve``, with real processes: on SIGTERM /readyz answers 503 at once while
the broker keeps serving for ``server.shutdown_drain``; then no new connection is accepted, the requests in
flight finish, and the process is gone within ``server.shutdown_timeout`` even when one never does."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support.postgres import free_port
from tests.support.processes import BROKER, ServerProcess, run_broker, serve_config

pytestmark = pytest.mark.e2e
REGISTRATION = json.dumps({"client_name": "slow", "redirect_uris": ["http://127.0.0.1:9/cb"],
                           "token_endpoint_auth_method": "none"}).encode()


def serving(tmp_path: Path, drain: float, timeout: float, workers: int = 1, database_url: str | None = None,
            ) -> ServerProcess:
    port = free_port()
    config = serve_config(tmp_path / "broker.toml", f"http://127.0.0.1:{port}", database_url,
                          registration={"enabled": True})
    env = {"BROKER_CONFIG": str(config), "BROKER_SERVER__SHUTDOWN_DRAIN": str(drain),
           "BROKER_SERVER__SHUTDOWN_TIMEOUT": str(timeout)}
    assert run_broker("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    return ServerProcess([*BROKER, "serve", "--port", "{port}", "--workers", str(workers)], env=env,
                         log_path=tmp_path / "serve.log", port=port, cwd=tmp_path).start()


def slow_registration(port: int) -> socket.socket:
    """POST /register whose body is still on its way: a request in flight that the client holds open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"POST /register HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(REGISTRATION)}\r\n\r\n".encode() + REGISTRATION[:10])
    return sock


def finish(sock: socket.socket) -> int:
    """Send the rest of the body; the response's status code."""
    sock.sendall(REGISTRATION[10:])
    status_line = sock.makefile("rb").readline().decode()
    sock.close()
    return int(status_line.split()[1])


def readyz(base: str) -> httpx.Response:
    return httpx.get(f"{base}/readyz", timeout=5, headers={"connection": "close"})


def terminate(server: ServerProcess) -> float:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGTERM)
    return time.monotonic()


def exit_time(server: ServerProcess, since: float, limit: float) -> float:
    assert server.proc is not None
    server.proc.wait(limit + 10)
    return time.monotonic() - since


def test_sigterm_drains_then_lets_the_request_in_flight_finish(tmp_path: Path) -> None:
    server = serving(tmp_path, drain=2, timeout=15)
    try:
        in_flight = slow_registration(server.port)
        time.sleep(0.3)  # the request has reached the app
        sent = terminate(server)
        first = readyz(server.base_url)
        assert time.monotonic() - sent < 1.0
        assert first.status_code == 503 and first.json()["checks"]["shutdown"] == "failed"
        assert httpx.get(f"{server.base_url}/jwks", timeout=5).status_code == 200  # still serving while draining
        time.sleep(max(0.0, sent + 2.5 - time.monotonic()))
        with pytest.raises(httpx.ConnectError):  # the drain is over: no new connections
            readyz(server.base_url)
        assert finish(in_flight) == 201
        assert exit_time(server, sent, 15) < 15
    finally:
        server.stop()
    assert "Traceback" not in server.output()


def test_a_request_that_never_ends_does_not_hold_the_process_past_the_timeout(tmp_path: Path) -> None:
    server = serving(tmp_path, drain=1, timeout=4)
    try:
        stuck = slow_registration(server.port)
        time.sleep(0.3)
        sent = terminate(server)
        assert exit_time(server, sent, 4) < 4
        stuck.close()
    finally:
        server.stop()


def test_every_worker_drains_under_the_supervisor(tmp_path: Path, postgres_server) -> None:
    url = postgres_server.create_database("shutdown_workers")
    server = serving(tmp_path, drain=2, timeout=15, workers=2, database_url=url)
    try:
        in_flight = [slow_registration(server.port) for _ in range(4)]  # on either worker, or both
        time.sleep(0.5)
        sent = terminate(server)
        while readyz(server.base_url).status_code == 200:
            assert time.monotonic() - sent < 1.0  # uvicorn's supervisor passes SIGTERM on within half a second
        assert [readyz(server.base_url).status_code for _ in range(4)] == [503] * 4  # from both workers
        time.sleep(max(0.0, sent + 3 - time.monotonic()))
        assert [finish(sock) for sock in in_flight] == [201] * 4
        assert exit_time(server, sent, 15) < 15
    finally:
        server.stop()
        postgres_server.drop_database("shutdown_workers")
