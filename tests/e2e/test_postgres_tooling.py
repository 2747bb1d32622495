"""The throwaway PostgreSQL server used by the e2e tests starts, serves and goes away cleanly."""

from __future__ import annotations

import errno
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import psycopg
import pytest

from tests.support.postgres import HOST, PostgresServer


def _port_is_free(port: int) -> bool:
    """Nothing listens on the port, and a new server could bind it."""
    with socket.socket() as probe:
        if probe.connect_ex((HOST, port)) != errno.ECONNREFUSED:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
            sock.listen()
        except OSError:
            return False
    return True


@pytest.mark.e2e
def test_server_creates_serves_drops_and_stops() -> None:
    server = PostgresServer().start()
    try:
        port = server.port
        url = server.create_database("tooling_check")
        assert url == f"postgresql+psycopg://broker@127.0.0.1:{port}/tooling_check"

        with psycopg.connect(server.conninfo("tooling_check"), autocommit=True) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            # A live session must not block the drop (WITH (FORCE)).
            server.drop_database("tooling_check")

        with psycopg.connect(server.conninfo()) as admin:
            found = admin.execute("select 1 from pg_database where datname = 'tooling_check'").fetchone()
        assert found is None
    finally:
        server.stop()

    server.stop()  # idempotent
    assert _port_is_free(port)


KILLED_OWNER = """
from tests.support.postgres import PostgresServer
server = PostgresServer().start()
print(server.port, server._dir, flush=True)
import time; time.sleep(120)
"""


@pytest.mark.e2e
def test_a_killed_test_process_leaves_no_server_behind() -> None:
    """atexit does not run on SIGKILL (a CI timeout): the server's DeathWatch stops and removes it."""
    owner = subprocess.Popen([sys.executable, "-c", KILLED_OWNER], stdout=subprocess.PIPE,
                             cwd=pathlib.Path(__file__).resolve().parents[2])
    assert owner.stdout is not None
    port, directory = owner.stdout.readline().decode().split()
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 30
    while not (_port_is_free(int(port)) and not pathlib.Path(directory).exists()):
        assert time.monotonic() < deadline, "the cluster outlived its owner"
        time.sleep(0.1)
