"""An https server on loopback with a test CA made at test time, serving configurable documents.

    certificates = TestCertificates(tmp_path, hosts=["client.test"])   # CA + server certificate (cryptography)
    with HttpsDocumentServer(certificates) as server:
        url = server.url("/client.json")                                  # https://127.0.0.1:<port>/client.json
        server.serve_json("/client.json", {...}, headers={"Cache-Control": "max-age=60"})
        server.serve("/moved", Reply(status=302, headers={"Location": "https://elsewhere/"}))
        server.serve("/slow", Reply(body=b"{...}", drip_interval=0.2))   # one byte every 0.2 s
        # certificates.ca_pem is the file for `cimd.ca_file`; server.requests / server.sni record what came in

``Tarpit`` is a plain TCP server that accepts and then sends one byte at a time forever (it looks
like the start of a TLS handshake), for proving that a client's deadline covers the handshake too.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drip_interval: float | None = None  # send the body one byte at a time, this many seconds apart
    drip_headers: bool = False  # with drip_interval: the status line and headers too
    send_length: bool = True  # Content-Length (else the body ends when the connection closes)


class TestCertificates:
    """A throwaway CA and a server certificate for ``hosts`` + 127.0.0.1 and ::1, written as PEM files."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path, hosts: tuple[str, ...] | list[str] = ("localhost",),
                 ips: tuple[str, ...] = ("127.0.0.1", "::1")):
        now = dt.datetime.now(dt.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp-auth-broker test CA")])
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
              .not_valid_after(now + dt.timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False, data_encipherment=False,
                                           key_agreement=False, encipher_only=False, decipher_only=False),
                             critical=True)
              .add_extension(ca_ski, critical=False)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (list(hosts) or ["server"])[0])]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
                .sign(ca_key, hashes.SHA256()))
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_pem = directory / "test-ca.pem"
        self.cert_pem = directory / "server-cert.pem"
        self.key_pem = directory / "server-key.pem"
        self.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                                  + ca.public_bytes(serialization.Encoding.PEM))
        self.key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_pem, self.key_pem)
        return context


class HttpsDocumentServer:
    """Serves ``Reply``s by path over https on ``host``:<free port>; unknown paths get 404."""

    def __init__(self, certificates: TestCertificates, host: str = "127.0.0.1"):
        self.certificates = certificates
        self.host = host
        self.routes: dict[str, Reply] = {}
        self.requests: list[dict[str, str]] = []  # {"path", "host"} of every request received
        self.sni: list[str | None] = []  # the TLS server name of every handshake
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start the server first"
        return int(self._server.server_address[1])

    def url(self, path: str, host: str | None = None) -> str:
        return f"https://{host or self.host}:{self.port}{path}"

    def serve(self, path: str, reply: Reply) -> None:
        self.routes[path] = reply

    def serve_json(self, path: str, document: Any, headers: dict[str, str] | None = None, **reply: Any) -> None:
        body = json.dumps(document).encode()
        self.serve(path, Reply(body=body, headers={"Content-Type": "application/json", **(headers or {})}, **reply))

    def start(self) -> HttpsDocumentServer:
        context = self.certificates.server_context()
        context.sni_callback = lambda sslsock, name, ctx: self.sni.append(name)  # type: ignore[assignment]
        server = ThreadingHTTPServer((self.host, 0), _handler(self))
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> HttpsDocumentServer:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def _handler(owner: HttpsDocumentServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            self.request.settimeout(10)
            super().setup()

        def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
            owner.requests.append({"path": self.path, "host": self.headers.get("Host", "")})
            reply = owner.routes.get(self.path, Reply(status=404, body=b"not found"))
            if reply.drip_interval is not None and reply.drip_headers:
                head = f"HTTP/1.1 {reply.status} Slow\r\n" + "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
                self._drip(head.encode() + b"\r\n" + reply.body, reply.drip_interval)
                self.close_connection = True
                return
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.send_length:
                self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self._body(reply)
            self.close_connection = True

        def _body(self, reply: Reply) -> None:
            if reply.drip_interval is None:
                self.wfile.write(reply.body)
            else:
                self._drip(reply.body, reply.drip_interval)

        def _drip(self, data: bytes, interval: float) -> None:
            for i in range(len(data)):
                if owner._stop.is_set():
                    return
                try:
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                except OSError:
                    return  # the client gave up, as it should
                time.sleep(interval)

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except (OSError, ssl.SSLError):
                self.close_connection = True  # a client that hung up mid-request (timeouts, refusals)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    return Handler


class Tarpit:
    """Accepts TCP connections and sends one byte every ``interval`` seconds, never finishing a TLS handshake."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connections = 0

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def start(self) -> Tarpit:
        self._sock.settimeout(0.1)
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._drip, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _drip(self, conn: socket.socket) -> None:
        # A TLS record header announcing a 16 KiB handshake record, then its body one byte at a time.
        data = b"\x16\x03\x03\x40\x00" + b"\x02" * 16384
        with conn:
            for i in range(len(data)):
                if self._stop.is_set():
                    return
                try:
                    conn.sendall(data[i:i + 1])
                except OSError:
                    return
                time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        for thread in self._threads:
            thread.join(2)

    def __enter__(self) -> Tarpit:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
