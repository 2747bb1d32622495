"""A minimal keep-alive HTTP/1.1 client on asyncio streams, for the load generator.

httpx costs ~150-250 us of generator CPU per request, which caps one core at a few thousand requests/s,
about the rate being measured; this client does only what a benchmark needs (one connection, requests
in sequence, Content-Length or chunked bodies, no TLS, no redirects) at a fraction of that
(`bench/suites/ceiling.py` measures both). Loopback only.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from urllib.parse import quote


class HttpError(Exception):
    """The connection broke or the server answered something this client cannot read."""


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    cookies: dict[str, str] = field(default_factory=dict)

    def location(self) -> str:
        return self.headers.get("location", "")


class Connection:
    """One keep-alive connection to 127.0.0.1:``port``; reconnects once when the server closed it."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._host_header = f"Host: {host}:{port}\r\n".encode()

    async def request(self, method: str, target: str, headers: bytes = b"", body: bytes = b"") -> Response:
        """``headers`` are ready-made lines (``b"Name: value\\r\\n"``); the body is sent with Content-Length."""
        head = (f"{method} {target} HTTP/1.1\r\n".encode() + self._host_header + headers
                + (f"Content-Length: {len(body)}\r\n\r\n".encode() if body or method == "POST" else b"\r\n"))
        for attempt in (1, 2):
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            try:
                self._writer.write(head + body)
                return await self._read_response()
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                await self.close()
                if attempt == 2:
                    raise HttpError(f"connection to port {self.port} failed: {exc!r}") from None
        raise AssertionError("unreachable")

    async def _read_response(self) -> Response:
        assert self._reader is not None
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        cookies: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            name, value = name.lower(), value.strip()
            if name == "set-cookie":
                pair = value.split(";", 1)[0]
                cookies[pair.split("=", 1)[0]] = pair.split("=", 1)[1] if "=" in pair else ""
            headers[name] = value
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked()
        else:
            body = await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, headers, body, cookies)

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        parts = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")  # no trailers are sent to this client
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except ConnectionError:
                pass
        self._reader = self._writer = None


def basic_auth(client_id: str, secret: str) -> bytes:
    """An ``Authorization: Basic`` header line (RFC 6749 §2.3.1: form-urlencode, then base64)."""
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return b"Authorization: Basic " + base64.b64encode(pair) + b"\r\n"


FORM = b"Content-Type: application/x-www-form-urlencoded\r\n"


def cookie_header(cookies: dict[str, str]) -> bytes:
    return ("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()) + "\r\n").encode() if cookies else b""


class RoundRobin:
    """Client-side round robin over several instances: each request goes to the next connection."""

    def __init__(self, connections: list[Connection], offset: int = 0) -> None:
        self.connections, self._next = connections, offset

    async def request(self, method: str, target: str, headers: bytes = b"", body: bytes = b"") -> Response:
        connection = self.connections[self._next % len(self.connections)]
        self._next += 1
        return await connection.request(method, target, headers, body)


class Links:
    """The connections of one run: ``http(i)`` for virtual client ``i``; all closed by ``close()``."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self._made: list[Connection] = []

    def connection(self, port: int) -> Connection:
        self._made.append(Connection(port))
        return self._made[-1]

    def http(self, i: int) -> Connection | RoundRobin:
        if len(self.ports) == 1:
            return self.connection(self.ports[0])
        return RoundRobin([self.connection(port) for port in self.ports], offset=i)

    async def close(self) -> None:
        for connection in self._made:
            await connection.close()
