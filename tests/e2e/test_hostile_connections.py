"""``broker serve`` as a real process against hostile connections and requests: an oversized request head is a
431, an idle keep-alive connection is closed after ``server.keep_alive_timeout``, and no class of bad input
(malformed credentials, JSON nested past any recursion limit, a forged log line) is a 5xx or leaves a traceback
in the server's log."""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path

import pytest

from tests.support.postgres import free_port
from tests.support.processes import BROKER, ServerProcess, run_broker, serve_config

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> ServerProcess:
    port = free_port()
    config = serve_config(tmp_path / "broker.toml", f"http://127.0.0.1:{port}", registration={"enabled": True},
                          server={"keep_alive_timeout": 1, "max_header_bytes": 16384},
                          logging={"format": "text"}, rate_limits={"enabled": False})
    env = {"BROKER_CONFIG": str(config)}
    assert run_broker("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    with ServerProcess([*BROKER, "serve", "--port", "{port}"], env=env, log_path=tmp_path / "serve.log", port=port,
                       cwd=tmp_path) as process:
        yield process


def exchange(port: int, raw: bytes, sock: socket.socket | None = None) -> tuple[int, socket.socket]:
    """Send ``raw`` (one request); the status code, and the connection for more."""
    sock = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(raw)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        if not chunk:
            break
        head += chunk
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(
        b"content-length:")), 0)
    body = head.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in head else b""
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ", 2)[1]), sock


def request(port: int, method: str, path: str, headers: list[tuple[bytes, bytes]] = (), body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: 127.0.0.1:{port}".encode(),
             *(name + b": " + value for name, value in headers), f"Content-Length: {len(body)}".encode()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def test_an_oversized_request_head_is_431(server: ServerProcess) -> None:
    port = server.port
    status, sock = exchange(port, request(port, "GET", "/jwks", [(b"x-padding", b"a" * 200_000)]))
    sock.close()
    assert status in (400, 431)  # the server's parser or the broker: either way never read by a handler
    for path in ("/token", "/admin/api/v1/servers", "/authorize"):
        status, sock = exchange(port, request(port, "GET", path, [(b"x-padding", b"a" * 17_000)]))
        sock.close()
        assert status == 431, path


def test_an_idle_keep_alive_connection_is_closed(server: ServerProcess) -> None:
    status, sock = exchange(server.port, request(server.port, "GET", "/healthz"))
    assert status == 200
    time.sleep(2.5)  # past server.keep_alive_timeout
    sock.settimeout(1.5)  # uvicorn's own default would keep it for 5 s
    assert sock.recv(1) == b""  # closed by the server
    sock.close()


def test_no_bad_input_is_a_5xx_or_a_traceback_in_the_log(server: ServerProcess) -> None:
    port = server.port
    form = (b"content-type", b"application/x-www-form-urlencoded")
    cases = [
        ("POST", "/token", [(b"authorization", b"Basic //46AA=="), form], b"grant_type=client_credentials"),
        ("POST", "/introspect", [(b"authorization", b"Basic \xff\xfe"), form], b"token=x"),
        ("GET", "/revocations", [(b"authorization", b"Basic " + base64.b64encode(b"a\x00:b"))], b""),
        ("GET", "/userinfo", [(b"authorization", b"Bearer \xff" + b"[" * 3000)], b""),
        ("POST", "/register", [(b"content-type", b"application/json")], b"[" * 30_000 + b"]" * 30_000),
        ("POST", "/register", [(b"content-type", b"application/json")], b'{"redirect_uris": [1]}'),
        ("POST", "/global-logout", [(b"authorization", b"Bearer a.b.c")], b"{}"),
        ("GET", "/token%0Aerror broker: forged", [], b""),
    ]
    for method, path, headers, body in cases:
        status, sock = exchange(port, request(port, method, path, headers, body))
        sock.close()
        assert status < 500, (path, status)
    log = server.output()
    assert "Traceback" not in log, log[-3000:]
    assert not [line for line in log.splitlines() if line.startswith("error broker: forged")]
