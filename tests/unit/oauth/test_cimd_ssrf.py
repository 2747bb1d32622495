"""The client metadata fetcher as an SSRF surface: address rules, pinning, and misbehaving servers.

The fetcher talks to a real https server on loopback (tests/support/https_server.py) with a test
CA; host names are resolved by an injected resolver, so no test needs real DNS, and names like
``client.test`` (which real DNS cannot resolve) prove the connection goes to the pinned address.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.oauth.ssrf import FetchError, HttpsMetadataFetcher, special_use
from tests.support.https_server import HttpsDocumentServer, Reply, Tarpit, TestCertificates

TIMEOUT = 1.0
MAX_BYTES = 5120


# ---------------------------------------------------------------- address classification


@pytest.mark.parametrize("address,label", [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),  # cloud instance metadata
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.0.8", "IETF protocol assignment"),
    ("192.0.2.10", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("192.88.99.1", "6to4 relay"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback address inside an IPv6 address"),
    ("::ffff:10.0.0.1", "private address inside an IPv6 address"),
    ("::ffff:169.254.169.254", "link-local address inside an IPv6 address"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("::127.0.0.1", "IPv4-compatible"),
    ("::8.8.8.8", "IPv4-compatible"),
    ("64:ff9b::10.0.0.1", "private address inside an IPv6 address"),  # NAT64 to a private address
    ("64:ff9b::7f00:1", "loopback address inside an IPv6 address"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("2002:0a00:0001::1", "private address inside an IPv6 address"),  # 6to4 embedding 10.0.0.1
    ("2002:7f00:0001::1", "loopback address inside an IPv6 address"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "IETF protocol assignment"),  # Teredo
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("100::1", "discard-only"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("5f00::1", "reserved IPv6"),  # SRv6 SIDs, outside global unicast
    ("::ffff:0:10.0.0.1", "reserved IPv6"),  # IPv4-translated (SIIT)
])
def test_special_use_addresses(address: str, label: str) -> None:
    reason = special_use(address)
    assert reason is not None and label in reason


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "93.184.215.14", "100.63.255.255", "100.128.0.1", "172.15.255.255", "172.32.0.1",
    "192.0.1.1", "169.253.0.1", "223.255.255.255",
    "2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:0808:0808::1",
])
def test_public_addresses(address: str) -> None:
    assert special_use(address) is None


# ---------------------------------------------------------------- the fetcher against a real https server


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return TestCertificates(tmp_path_factory.mktemp("tls"), hosts=["client.test", "localhost"])


@pytest.fixture
def server(certificates: TestCertificates) -> Iterator[HttpsDocumentServer]:
    with HttpsDocumentServer(certificates) as running:
        yield running


class FakeResolver:
    """A resolver with fixed answers per host; counts every lookup."""

    def __init__(self, answers: dict[str, list[str]], delay: float = 0.0):
        self.answers = answers
        self.delay = delay
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        time.sleep(self.delay)
        if host not in self.answers:
            raise OSError("name not known")
        return self.answers[host]


def fetcher(certificates: TestCertificates, resolver: FakeResolver | None = None, *, allow_loopback: bool = True,
            timeout: float = TIMEOUT) -> HttpsMetadataFetcher:
    options = {"resolver": resolver} if resolver is not None else {}
    return HttpsMetadataFetcher(max_bytes=MAX_BYTES, timeout=timeout, ca_file=certificates.ca_pem,
                                allow_loopback=allow_loopback, **options)


def refused(fetch: HttpsMetadataFetcher, url: str, match: str) -> float:
    started = time.monotonic()
    with pytest.raises(FetchError, match=match):
        fetch.fetch(url)
    return time.monotonic() - started


def test_fetches_a_document_and_keeps_the_cache_headers(server: HttpsDocumentServer,
                                                        certificates: TestCertificates) -> None:
    server.serve_json("/client.json", {"client_id": "x"}, headers={"Cache-Control": "max-age=60", "X-Other": "1"})
    fetched = fetcher(certificates).fetch(server.url("/client.json"))
    assert json.loads(fetched.body) == {"client_id": "x"}
    assert fetched.headers["cache-control"] == "max-age=60" and "x-other" not in fetched.headers
    assert fetched.address == "127.0.0.1"


def test_connects_to_the_pinned_address_with_the_host_name_for_tls_and_host(
        server: HttpsDocumentServer, certificates: TestCertificates) -> None:
    # client.test exists in no DNS: success means the connection went to the address resolved and checked once.
    resolver = FakeResolver({"client.test": ["127.0.0.1"]})
    server.serve_json("/client.json", {"ok": True})
    fetched = fetcher(certificates, resolver).fetch(server.url("/client.json", host="client.test"))
    assert json.loads(fetched.body) == {"ok": True}
    assert resolver.lookups == ["client.test"]  # one lookup per fetch, nothing else resolves
    assert server.sni == ["client.test"]  # certificate checked for the URL's host
    assert server.requests == [{"path": "/client.json", "host": f"client.test:{server.port}"}]


def test_dns_rebinding_cannot_move_the_connection(server: HttpsDocumentServer, certificates: TestCertificates) -> None:
    class Rebinding(FakeResolver):
        def __call__(self, host: str, port: int) -> list[str]:
            self.lookups.append(host)
            return ["127.0.0.1"] if len(self.lookups) == 1 else ["169.254.169.254"]

    resolver = Rebinding({})
    server.serve_json("/client.json", {"ok": True})
    assert fetcher(certificates, resolver).fetch(server.url("/client.json", host="client.test")).address == "127.0.0.1"
    assert resolver.lookups == ["client.test"]


@pytest.mark.parametrize("answers,reason", [
    (["127.0.0.1"], "resolves to a loopback address"),
    (["10.0.0.5"], "private address"),
    (["192.168.0.10"], "private address"),
    (["169.254.169.254"], "link-local address"),
    (["100.64.1.1"], "carrier-grade NAT"),
    (["0.0.0.0"], "unspecified"),
    (["::1"], "loopback"),
    (["::ffff:127.0.0.1"], "loopback address inside an IPv6 address"),
    (["::ffff:10.0.0.1"], "private address inside an IPv6 address"),
    (["::ffff:169.254.169.254"], "link-local address inside an IPv6 address"),
    (["fe80::1"], "link-local"),
    (["fc00::1"], "unique local"),
    (["ff02::1"], "multicast"),
    (["93.184.215.14", "10.0.0.1"], "private address"),  # one bad answer is enough
])
def test_refuses_hosts_resolving_to_special_use_addresses(answers: list[str], reason: str,
                                                          server: HttpsDocumentServer,
                                                          certificates: TestCertificates) -> None:
    server.serve_json("/client.json", {"ok": True})
    resolver = FakeResolver({"client.test": answers})
    refused(fetcher(certificates, resolver, allow_loopback=False), server.url("/client.json", host="client.test"),
            reason)
    assert server.requests == []  # refused before connecting


@pytest.mark.parametrize("answers", [["10.0.0.1"], ["169.254.169.254"], ["::ffff:10.0.0.1"], ["127.0.0.1", "10.0.0.1"]])
def test_allow_loopback_lets_loopback_through_and_nothing_else(answers: list[str], server: HttpsDocumentServer,
                                                               certificates: TestCertificates) -> None:
    resolver = FakeResolver({"client.test": answers})
    refused(fetcher(certificates, resolver, allow_loopback=True), server.url("/client.json", host="client.test"),
            "never fetched from")


def test_ip_literals_are_checked_too(server: HttpsDocumentServer, certificates: TestCertificates) -> None:
    refused(fetcher(certificates, allow_loopback=False), server.url("/client.json"), "127.0.0.1 is a loopback address")
    assert server.requests == []


def test_ipv4_mapped_loopback_is_loopback_when_allowed(server: HttpsDocumentServer,
                                                       certificates: TestCertificates) -> None:
    server.serve_json("/client.json", {"ok": True})
    resolver = FakeResolver({"client.test": ["::ffff:127.0.0.1"]})
    fetched = fetcher(certificates, resolver).fetch(server.url("/client.json", host="client.test"))
    assert fetched.address == "127.0.0.1"  # dialled as the IPv4 address it names


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_refused_and_never_followed(status: int, server: HttpsDocumentServer,
                                                  certificates: TestCertificates) -> None:
    server.serve("/moved", Reply(status=status, headers={"Location": server.url("/client.json")}))
    server.serve_json("/client.json", {"ok": True})
    refused(fetcher(certificates), server.url("/moved"), f"HTTP {status} \\(a redirect\\)")
    assert [r["path"] for r in server.requests] == ["/moved"]


@pytest.mark.parametrize("status", [201, 204, 304, 404, 500])
def test_only_200_is_accepted(status: int, server: HttpsDocumentServer, certificates: TestCertificates) -> None:
    server.serve("/client.json", Reply(status=status, body=b"{}" if status not in (204, 304) else b""))
    refused(fetcher(certificates), server.url("/client.json"), f"HTTP {status}")


def test_oversize_documents_are_refused_by_content_length(server: HttpsDocumentServer,
                                                          certificates: TestCertificates) -> None:
    server.serve("/big.json", Reply(body=b" " * (MAX_BYTES + 1)))
    refused(fetcher(certificates), server.url("/big.json"), f"larger than {MAX_BYTES} bytes")


def test_oversize_documents_without_a_length_stop_being_read(server: HttpsDocumentServer,
                                                             certificates: TestCertificates) -> None:
    server.serve("/big.json", Reply(body=b" " * (10 * 1024 * 1024), send_length=False))
    assert refused(fetcher(certificates, timeout=5), server.url("/big.json"), "larger than") < 2


def test_a_document_of_exactly_the_cap_is_fine(server: HttpsDocumentServer, certificates: TestCertificates) -> None:
    server.serve("/full.json", Reply(body=b" " * MAX_BYTES, send_length=False))
    assert len(fetcher(certificates).fetch(server.url("/full.json")).body) == MAX_BYTES


def test_a_slow_drip_body_is_cut_at_the_deadline(server: HttpsDocumentServer, certificates: TestCertificates) -> None:
    server.serve("/slow.json", Reply(body=b"{" + b" " * 200 + b"}", drip_interval=0.1))  # each byte well in time
    took = refused(fetcher(certificates), server.url("/slow.json"), f"within {TIMEOUT:g} seconds")
    assert TIMEOUT - 0.1 < took < TIMEOUT + 0.5


def test_slow_headers_are_cut_at_the_deadline(server: HttpsDocumentServer, certificates: TestCertificates) -> None:
    # The status line and headers dripped one byte at a time: a per-read timeout alone would never fire.
    server.serve("/slow.json", Reply(body=b"{}", headers={f"X-Pad-{i}": "y" * 50 for i in range(100)},
                                     drip_interval=0.05, drip_headers=True))
    took = refused(fetcher(certificates), server.url("/slow.json"), f"within {TIMEOUT:g} seconds")
    assert took < TIMEOUT + 0.5


def test_a_tls_handshake_tarpit_is_cut_at_the_deadline(certificates: TestCertificates) -> None:
    with Tarpit(interval=0.1) as tarpit:
        took = refused(fetcher(certificates), f"https://127.0.0.1:{tarpit.port}/client.json",
                       f"within {TIMEOUT:g} seconds")
        assert tarpit.connections == 1
    assert took < TIMEOUT + 0.5


def test_a_hanging_dns_lookup_is_cut_at_the_deadline(certificates: TestCertificates) -> None:
    resolver = FakeResolver({"client.test": ["127.0.0.1"]}, delay=3)
    took = refused(fetcher(certificates, resolver), "https://client.test/client.json", "resolving client.test took")
    assert took < TIMEOUT + 0.5


def test_unknown_hosts_are_a_clear_error(certificates: TestCertificates) -> None:
    refused(fetcher(certificates, FakeResolver({})), "https://nowhere.test/client.json", "could not be resolved")


def test_untrusted_certificates_are_refused(server: HttpsDocumentServer, tmp_path: Path) -> None:
    server.serve_json("/client.json", {"ok": True})
    other_ca = TestCertificates(tmp_path)  # not the CA that signed the server's certificate
    refused(fetcher(other_ca), server.url("/client.json"), "certificate is not trusted")


def test_certificates_for_another_host_are_refused(server: HttpsDocumentServer,
                                                   certificates: TestCertificates) -> None:
    server.serve_json("/client.json", {"ok": True})
    resolver = FakeResolver({"other.test": ["127.0.0.1"]})
    refused(fetcher(certificates, resolver), server.url("/client.json", host="other.test"), "certificate")


def test_compressed_documents_are_refused(server: HttpsDocumentServer, certificates: TestCertificates) -> None:
    server.serve("/client.json", Reply(body=b"\x1f\x8b\x08\x00", headers={"Content-Encoding": "gzip"}))
    refused(fetcher(certificates), server.url("/client.json"), "Content-Encoding 'gzip'")


def test_connection_refused_is_a_clear_error(certificates: TestCertificates) -> None:
    from tests.support.postgres import free_port

    refused(fetcher(certificates), f"https://127.0.0.1:{free_port()}/client.json", "could not be reached")


def test_only_https_is_fetched(certificates: TestCertificates) -> None:
    refused(fetcher(certificates), "http://127.0.0.1/client.json", "only https")


def test_an_unreadable_ca_file_is_a_clear_configuration_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ValueError, match="cimd.ca_file"):
        HttpsMetadataFetcher(max_bytes=MAX_BYTES, timeout=TIMEOUT, ca_file=bad)
    with pytest.raises(ValueError, match="cimd.ca_file"):
        HttpsMetadataFetcher(max_bytes=MAX_BYTES, timeout=TIMEOUT, ca_file=tmp_path / "missing.pem")


def test_concurrent_fetches_do_not_share_pins(server: HttpsDocumentServer, certificates: TestCertificates) -> None:
    server.serve_json("/client.json", {"ok": True})
    resolver = FakeResolver({"client.test": ["127.0.0.1"], "evil.test": ["10.0.0.1"]})
    fetch = fetcher(certificates, resolver)
    results: dict[str, str] = {}

    def run(host: str) -> None:
        try:
            results[host] = fetch.fetch(server.url("/client.json", host=host)).address
        except FetchError as exc:
            results[host] = f"refused: {exc}"

    threads = [threading.Thread(target=run, args=(h,)) for h in ("client.test", "evil.test") * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results["client.test"] == "127.0.0.1" and results["evil.test"].startswith("refused: evil.test resolves")
