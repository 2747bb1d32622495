"""Fetching a small document from a URL a stranger chose, without becoming their proxy (SSRF).

A Client ID Metadata Document URL is attacker-controlled input that makes the broker send a
request. ``HttpsMetadataFetcher`` is the only code that sends it, and it:

- speaks https only, with certificate and host name verification (extra CAs from ``ca_file``);
- resolves the host once, refuses the fetch if ANY address is special-use (RFC 6890 and the IANA
  special-purpose registries; also IPv4 embedded in IPv6: mapped, compatible, NAT64, 6to4, Teredo),
  and then connects to the checked address itself: its network backend ignores the host name it
  is given, so no second DNS lookup can happen (DNS rebinding cannot switch the address), while
  TLS SNI, certificate verification and ``Host`` still use the URL's host;
- never follows redirects and accepts only ``200``;
- stops reading past ``max_bytes`` (and refuses a larger ``Content-Length`` up front);
- bounds the whole fetch (DNS, connect, TLS, headers, body) by one deadline: every socket
  operation gets at most the time left, and a watchdog shuts the socket down when the deadline
  passes, so a server dripping one byte at a time cannot hold a worker thread.

``allow_loopback`` (dev and tests only; production mode refuses it) lets loopback addresses
through and nothing else of the special-use list.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpcore

from broker.federation import calls

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""``(host, port) -> addresses``; the real one is ``system_resolver``, tests inject their own."""

USER_AGENT = "mcp-auth-broker (client metadata fetcher)"
CACHE_HEADERS = ("cache-control", "expires", "date", "age", "content-type")

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
LOOPBACK = "a loopback address"
# RFC 6890 and the IANA IPv4 Special-Purpose Address Registry: never a client's web server.
V4_SPECIAL: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "an unspecified ('this network') address"),  # RFC 791, RFC 6890 §2.2.2
    (_V4("10.0.0.0/8"), "a private address"),  # RFC 1918
    (_V4("100.64.0.0/10"), "a shared (carrier-grade NAT) address"),  # RFC 6598
    (_V4("127.0.0.0/8"), LOOPBACK),  # RFC 1122 §3.2.1.3
    (_V4("169.254.0.0/16"), "a link-local address"),  # RFC 3927 (cloud metadata services live here)
    (_V4("172.16.0.0/12"), "a private address"),  # RFC 1918
    (_V4("192.0.0.0/24"), "an IETF protocol assignment"),  # RFC 6890 §2.2.2
    (_V4("192.0.2.0/24"), "a documentation address"),  # RFC 5737
    (_V4("192.88.99.0/24"), "a 6to4 relay anycast address"),  # RFC 7526
    (_V4("192.168.0.0/16"), "a private address"),  # RFC 1918
    (_V4("198.18.0.0/15"), "a benchmarking address"),  # RFC 2544
    (_V4("198.51.100.0/24"), "a documentation address"),  # RFC 5737
    (_V4("203.0.113.0/24"), "a documentation address"),  # RFC 5737
    (_V4("224.0.0.0/4"), "a multicast address"),  # RFC 5771
    (_V4("240.0.0.0/4"), "a reserved address"),  # RFC 1112 §4, with 255.255.255.255 (RFC 919)
)
# The IANA IPv6 Special-Purpose Address Registry, checked in this order (most specific first).
V6_SPECIAL: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "the unspecified address"),  # RFC 4291 §2.5.2
    (_V6("::1/128"), LOOPBACK),  # RFC 4291 §2.5.3
    (_V6("::/96"), "an IPv4-compatible address (deprecated)"),  # RFC 4291 §2.5.5.1
    (_V6("64:ff9b:1::/48"), "a local-use NAT64 address"),  # RFC 8215
    (_V6("100::/64"), "a discard-only address"),  # RFC 6666
    (_V6("2001:db8::/32"), "a documentation address"),  # RFC 3849
    (_V6("2001::/23"), "an IETF protocol assignment (Teredo, ORCHID, ...)"),  # RFC 2928, RFC 4380
    (_V6("3fff::/20"), "a documentation address"),  # RFC 9637
    (_V6("fc00::/7"), "a unique local (private) address"),  # RFC 4193
    (_V6("fe80::/10"), "a link-local address"),  # RFC 4291 §2.5.6
    (_V6("fec0::/10"), "a site-local address (deprecated)"),  # RFC 3879
    (_V6("ff00::/8"), "a multicast address"),  # RFC 4291 §2.7
)
V6_GLOBAL_UNICAST = _V6("2000::/3")  # RFC 4291 §2.4: everything else is not a public host
NAT64_WELL_KNOWN = _V6("64:ff9b::/96")  # RFC 6052 §2.1: the last 32 bits are an IPv4 address
SIXTOFOUR = _V6("2002::/16")  # RFC 3056: bits 16-48 are an IPv4 address


class FetchError(Exception):
    """The document could not be fetched. The message is ours (never the server's), safe to show and log."""


@dataclass(frozen=True)
class FetchedDocument:
    """An unverified response body (``200``, at most ``max_bytes``) with the headers that matter for caching."""

    url: str
    body: bytes
    headers: Mapping[str, str]  # lower-case names: cache-control, expires, date, age, content-type
    received_at: dt.datetime
    address: str  # the address actually connected to


def special_use(address: str | IPAddress) -> str | None:
    """Why ``address`` must not be fetched from (e.g. "a private address"), or None for a public address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv4Address):
        return next((label for net, label in V4_SPECIAL if ip in net), None)
    embedded = embedded_ipv4(ip)
    if embedded is not None:  # the packet goes to the IPv4 address inside
        reason = special_use(embedded)
        return f"{reason} inside an IPv6 address" if reason else None
    reason = next((label for net, label in V6_SPECIAL if ip in net), None)
    if reason is None and ip not in V6_GLOBAL_UNICAST:
        reason = "a reserved IPv6 address"  # RFC 4291 §2.4: unassigned outside 2000::/3
    return reason


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 (well-known prefix) or 6to4 address reaches, if any."""
    if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d, RFC 4291 §2.5.5.2
        return ip.ipv4_mapped
    if ip in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in SIXTOFOUR:
        return ip.sixtofour
    return None


def is_loopback(address: str) -> bool:
    return special_use(address) in (LOOPBACK, f"{LOOPBACK} inside an IPv6 address")


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (one ``getaddrinfo`` call; literals come back as they are)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


# getaddrinfo has no timeout of its own: it runs here and the fetch stops waiting at its deadline.
_dns = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cimd-dns")


class HttpsMetadataFetcher:
    """GET one small https document with the guards in the module docstring (thread-safe, synchronous)."""

    def __init__(self, *, max_bytes: int, timeout: float, ca_file: Path | None = None, allow_loopback: bool = False,
                 resolver: Resolver = system_resolver):
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.allow_loopback = allow_loopback
        self.resolver = resolver
        self.ssl_context = _ssl_context(ca_file)

    def fetch(self, url: str) -> FetchedDocument:
        """The ``200`` body at ``url``; ``FetchError`` for anything else (with a reason a person understands)."""
        with calls.timed("cimd", "cimd", "document") as outcome:
            try:
                return self._fetch(url, outcome)
            except FetchError:
                outcome.value = outcome.value or "refused"  # a guard said no, or the answer was not a document
                raise

    def _fetch(self, url: str, outcome: calls.CallOutcome) -> FetchedDocument:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise FetchError("only https URLs are fetched")
        port = parts.port or 443
        deadline = _Deadline(self.timeout)
        try:
            address = self._pinned_address(parts.hostname, port, deadline)
            return self._get(url, parts.hostname, port, address, deadline, outcome)
        except FetchError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the network did, the caller gets one clear line
            outcome.value = "timeout" if deadline.expired else "unreachable"
            if deadline.expired:
                raise FetchError(f"no complete answer within {self.timeout:g} seconds") from None
            raise FetchError(_describe(exc)) from None
        finally:
            deadline.close()

    def _pinned_address(self, host: str, port: int, deadline: _Deadline) -> str:
        """Resolve once and check every address; the first one is the only one ever connected to."""
        future = _dns.submit(self.resolver, host, port)
        try:
            addresses = list(future.result(timeout=deadline.remaining()))
        except FutureTimeout:
            raise FetchError(f"resolving {host} took longer than {self.timeout:g} seconds") from None
        except (OSError, UnicodeError, ValueError):
            raise FetchError(f"{host} could not be resolved") from None
        if not addresses:
            raise FetchError(f"{host} could not be resolved")
        for address in addresses:  # all of them: one bad address is enough to refuse (rebinding, split views)
            reason = special_use(address)
            if reason is not None and not (self.allow_loopback and is_loopback(address)):
                verb = "is" if _is_literal(host) else "resolves to"
                raise FetchError(f"{host} {verb} {reason}, which is never fetched from")
        return _dial_form(addresses[0])

    def _get(self, url: str, host: str, port: int, address: str, deadline: _Deadline,
             outcome: calls.CallOutcome) -> FetchedDocument:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request_url = httpcore.URL(scheme=b"https", host=host.encode("ascii"), port=port, target=target.encode("ascii"))
        headers = [(b"Host", parts.netloc.encode("ascii")), (b"Accept", b"application/json"),
                   (b"Accept-Encoding", b"identity"), (b"User-Agent", USER_AGENT.encode()), (b"Connection", b"close")]
        timeouts = {name: self.timeout for name in ("connect", "read", "write", "pool")}
        with httpcore.ConnectionPool(ssl_context=self.ssl_context, network_backend=_PinnedBackend(address, deadline),
                                     max_connections=1, retries=0, http1=True, http2=False) as pool:
            with pool.stream("GET", request_url, headers=headers, extensions={"timeout": timeouts}) as response:
                received = _headers(response.headers)
                outcome.status(response.status)
                _check_status(response.status)
                _check_framing(received, self.max_bytes)
                body = self._read(response.iter_stream())
        return FetchedDocument(url=url, body=body, headers={k: v for k, v in received.items() if k in CACHE_HEADERS},
                               received_at=dt.datetime.now(dt.UTC), address=address)

    def _read(self, chunks: Iterable[bytes]) -> bytes:
        body = bytearray()
        for chunk in chunks:
            body += chunk
            if len(body) > self.max_bytes:  # stop reading: the rest is never downloaded
                raise FetchError(f"the document is larger than {self.max_bytes} bytes")
        return bytes(body)


def _ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    context = httpcore.default_ssl_context()  # certifi's roots, hostname checking on
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cimd.ca_file: cannot load CA certificates from {ca_file}: {exc}") from None
    return context


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _dial_form(address: str) -> str:
    """What to connect to: an IPv4-mapped IPv6 address is dialled as the IPv4 address it names."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return address


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text  # RFC 9110 §5.3: combine
    return headers


def _check_status(status: int) -> None:
    if 300 <= status < 400:  # CIMD: redirects are not followed (the URL is the client's identity)
        raise FetchError(f"the server answered HTTP {status} (a redirect); redirects are not followed")
    if status != 200:
        raise FetchError(f"the server answered HTTP {status}, not 200")


def _check_framing(headers: Mapping[str, str], max_bytes: int) -> None:
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise FetchError(f"the document is sent with Content-Encoding {encoding!r}; send it uncompressed")
    length = headers.get("content-length")
    if length is not None and (not (length.strip().isascii() and length.strip().isdigit()) or int(length) > max_bytes):
        raise FetchError(f"the document is larger than {max_bytes} bytes")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        return "its TLS certificate is not trusted (or does not name the host)"
    if isinstance(exc, httpcore.ConnectError | httpcore.ConnectTimeout | ConnectionError):
        return "the server could not be reached"
    if isinstance(exc, httpcore.TimeoutException | TimeoutError):
        return "the server did not answer in time"
    if isinstance(exc, httpcore.ProtocolError):
        return "the server's answer was not valid HTTP/1.1"
    return "the server could not be reached"


class _Deadline:
    """One deadline for a whole fetch, and a watchdog that shuts down its sockets when it passes."""

    def __init__(self, seconds: float):
        self.expires = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []  # duplicates of the connection's descriptor
        self._closed = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.expires

    def remaining(self) -> float:
        left = self.expires - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("deadline passed")
        return left

    def clip(self, timeout: float | None) -> float:
        left = self.remaining()
        return left if timeout is None else min(timeout, left)

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down at the deadline; a dup survives ``wrap_socket`` detaching the original."""
        with self._lock:
            if self._closed:
                return
            self._sockets.append(sock.dup())

    def _expire(self) -> None:
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked in any thread, even mid-handshake
                except OSError:
                    pass

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._closed = True
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


class _PinnedBackend(httpcore.NetworkBackend):
    """Connects to the address resolved and checked before, whatever host name httpcore passes."""

    def __init__(self, address: str, deadline: _Deadline):
        self.address = address
        self.deadline = deadline
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        # ``host`` is deliberately unused: resolving it again could give another address (DNS rebinding).
        stream = self._backend.connect_tcp(self.address, port, self.deadline.clip(timeout), local_address,
                                           socket_options)
        self.deadline.watch(stream.get_extra_info("socket"))
        return _DeadlineStream(stream, self.deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are never used for client metadata")

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self.deadline.remaining()))


class _DeadlineStream(httpcore.NetworkStream):
    """Every read, write and TLS handshake gets at most the time left before the deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: _Deadline):
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.clip(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._deadline.clip(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(ssl_context, server_hostname, self._deadline.clip(timeout))
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)
