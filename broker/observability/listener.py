"""The separate metrics port (``metrics.listen``) and the bearer-token check both doors share.

A small threaded HTTP server answering ``GET /metrics`` only. When ``metrics.bearer_token`` is set it
is required here too; otherwise the port is open to whoever can reach it, so bind it to a private
interface.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("broker.metrics")

Render = Callable[[], tuple[bytes, str]]
CHALLENGE = 'Bearer realm="mcp-auth-broker metrics"'


def bearer_matches(header: str | None, expected: str) -> bool:
    """Whether ``Authorization: Bearer <expected>`` was presented, compared in constant time
    (over digests, so not even the token's length shows in the timing)."""
    scheme, _, presented = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        presented = ""
    return hmac.compare_digest(hashlib.sha256(presented.strip().encode()).digest(),
                               hashlib.sha256(expected.encode()).digest())


class MetricsListener:
    """Serve ``render()`` at ``http://host:port/metrics`` on a daemon thread until ``stop()``."""

    def __init__(self, host: str, port: int, render: Render, token: str | None):
        self.host, self.port = host, port
        self.render, self.token = render, token
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind and serve; returns the bound port (``port`` 0 picks a free one)."""
        server_class = _IPv6Server if ":" in self.host else ThreadingHTTPServer
        self._server = server_class((self.host, self.port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-listener", daemon=True)
        self._thread.start()
        log.info("metrics served at http://%s:%d/metrics", self.host, self.port)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        render, token = self.render, self.token

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server dispatches to
                if self.path.split("?", 1)[0] != "/metrics":
                    self._send(404, b"not found\n", "text/plain; charset=utf-8")
                elif token is not None and not bearer_matches(self.headers.get("authorization"), token):
                    self._send(401, b"a bearer token is required\n", "text/plain; charset=utf-8",
                               [("WWW-Authenticate", CHALLENGE)])
                else:
                    body, content_type = render()
                    self._send(200, body, content_type)

            def _send(self, status: int, body: bytes, content_type: str,
                      headers: list[tuple[str, str]] | None = None) -> None:
                self.send_response(status)
                for name, value in [("Content-Type", content_type), ("Content-Length", str(len(body))),
                                    ("Cache-Control", "no-store"), *(headers or [])]:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # scrapes are not logged
                pass

        return Handler


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
