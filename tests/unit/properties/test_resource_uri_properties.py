"""Properties of resource-URI canonicalisation (RFC 8707 §2; ``broker.registry.resources``).

The module promises one spelling per MCP server: lower-case scheme and host, no default port, no
trailing slash, no fragment, no user information, no dot segments, and Unicode hosts as IDNA so a
look-alike never equals a registered ASCII host. Two hosts are "the same" here when UTS #46 (the
mapping browsers and the ``idna`` package apply) turns them into the same ASCII name.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

import idna
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from broker.registry.resources import InvalidResource, canonical_resource
from tests.support.budget import examples

SETTINGS = settings(max_examples=examples(150), derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

LETTERS = "abcdefghijklmnopqrstuvwxyz"
# No "--" in positions 3-4: IDNA 2008 reserves those labels for ACE (xn--), so UTS #46 refuses them.
labels = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\Z").filter(lambda label: label[2:4] != "--")
dns_hosts = st.builds(lambda ls, tld: ".".join([*ls, tld]), st.lists(labels, min_size=1, max_size=3),
                      st.sampled_from(["com", "example", "org", "io"]))
ipv4_hosts = st.ip_addresses(v=4).map(str)
ipv6_hosts = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
hosts = st.one_of(dns_hosts, dns_hosts, ipv4_hosts, ipv6_hosts, st.just("localhost"))
schemes = st.sampled_from(["http", "https"])
path_chars = st.sampled_from([*"aAbBzZ09-_~!$&'()*+,;=:@", "%2F", "%41", "%7e", "%20"])
segments = st.lists(path_chars, min_size=1, max_size=6).map("".join)
paths = st.lists(segments, max_size=4).map(lambda segs: "".join("/" + s for s in segs))
trailing = st.sampled_from(["", "", "/", "//"])
queries = st.one_of(st.just(""), st.from_regex(r"\A[a-zA-Z0-9=&%/]{1,12}\Z").map(lambda q: "?" + q))
ports = st.one_of(st.none(), st.integers(1, 65535))


def recase(draw, text: str) -> str:
    """``text`` with each letter's case chosen at random."""
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))


@st.composite
def resource_parts(draw):
    return draw(schemes), draw(hosts), draw(ports), draw(paths), draw(trailing), draw(queries)


def build(scheme: str, host: str, port: int | None, path: str, trail: str = "", query: str = "") -> str:
    return f"{scheme}://{host}{'' if port is None else f':{port}'}{path}{trail}{query}"


# URL-ish text: the URI alphabet plus characters that have broken URL parsers before.
uri_alphabet = st.sampled_from([*"abcAB019:/?#[]@!$&'()*+,;=-._~%", "%2e", "%2E", "..", "\\", "\x7f", "\x00",
                                "\u0430", "\uff45", "\uff0e", "\u2100", "\u00df", "\u200d", "\u00ad", "\ud800",
                                "xn--", "http://", "https://", "HTTPS://", "[::1]", "127.0.0.1", ":443", ":80"])
urlish = st.lists(uri_alphabet, max_size=20).map("".join)
arbitrary_text = st.one_of(st.text(max_size=60), st.text(st.characters(codec=None), max_size=30), urlish,
                           st.builds(lambda s, t: s + t, st.sampled_from(["http://", "https://", "HtTpS://"]), urlish))


def canonical_or_none(uri: str) -> str | None:
    try:
        return canonical_resource(uri)
    except InvalidResource:
        return None


@SETTINGS
@given(st.one_of(resource_parts().map(lambda p: build(*p)), arbitrary_text))
@example("https://mcp.example.com/")
@example("https://[::FFFF:1.2.3.4]:443/x?")
def test_canonicalising_is_idempotent(uri: str) -> None:
    """Canonical form is a fixed point: canonicalising it again changes nothing."""
    once = canonical_or_none(uri)
    assume(once is not None)
    assert canonical_resource(once) == once


@SETTINGS
@given(arbitrary_text)
@example("https://a\u2100b.example/x")          # NFKC makes '/' appear in the host
@example("https://\ud800.example/x")            # a lone surrogate
@example("https://" + "a" * 64 + ".example/")   # an over-long label
@example("https://[v1.x]/")
def test_arbitrary_text_only_ever_raises_invalid_resource(uri: str) -> None:
    """Any string either canonicalises to an http(s) URI with an ASCII host or raises ``InvalidResource``.

    (Only the host is promised ASCII: a non-ASCII path such as ``/\x80`` is kept as given.)
    """
    result = canonical_or_none(uri)
    if result is not None:
        assert urlsplit(result).netloc.isascii()
        assert result.startswith(("http://", "https://"))
        assert "#" not in result


@SETTINGS
@given(resource_parts(), st.data())
def test_scheme_and_host_are_case_insensitive(parts, data) -> None:
    """Lower-case scheme and host: re-casing either never changes the canonical form."""
    scheme, host, port, path, trail, query = parts
    assert canonical_resource(build(recase(data.draw, scheme), recase(data.draw, host), port, path, trail, query)) \
        == canonical_resource(build(scheme, host, port, path, trail, query))


@SETTINGS
@given(resource_parts(), st.data())
def test_paths_stay_case_sensitive(parts, data) -> None:
    """Only scheme and host are case-insensitive: a path differing in case is another resource."""
    scheme, host, port, path, trail, query = parts
    recased = recase(data.draw, path)
    assume(recased != path and re.sub("%[0-9a-fA-F]{2}", "", recased) != re.sub("%[0-9a-fA-F]{2}", "", path))
    assert canonical_resource(build(scheme, host, port, recased, trail, query)) \
        != canonical_resource(build(scheme, host, port, path, trail, query))


@SETTINGS
@given(resource_parts())
def test_default_ports_are_dropped_and_others_kept(parts) -> None:
    """No default port: ``:443`` on https and ``:80`` on http vanish; any other port stays."""
    scheme, host, port, path, trail, query = parts
    default = {"https": 443, "http": 80}[scheme]
    bare = canonical_resource(build(scheme, host, None, path, trail, query))
    assert canonical_resource(build(scheme, host, default, path, trail, query)) == bare
    if port is not None and port != default:
        canonical = canonical_resource(build(scheme, host, port, path, trail, query))
        assert canonical != bare and urlsplit(canonical).port == port


@SETTINGS
@given(resource_parts(), st.text(max_size=8))
def test_a_fragment_is_always_refused(parts, fragment) -> None:
    """No fragment (RFC 8707 §2): any ``#``, even an empty fragment, is refused."""
    with pytest.raises(InvalidResource):
        canonical_resource(build(*parts) + "#" + fragment)


DOT_SEGMENTS = [".", "..", "%2e", "%2E", "%2e%2e", "%2E%2E", ".%2e", "%2e."]


@SETTINGS
@given(resource_parts(), st.sampled_from([".", ".."]), st.integers(0, 4))
def test_literal_dot_segments_are_refused(parts, dots, where) -> None:
    """No dot segments: a literal ``.`` or ``..`` segment anywhere in the path is refused."""
    scheme, host, port, path, trail, query = parts
    segs = path.split("/")[1:]
    segs.insert(min(where, len(segs)), dots)
    with pytest.raises(InvalidResource):
        canonical_resource(build(scheme, host, port, "".join("/" + s for s in segs), trail, query))


def _has_dot_segment(path: str) -> bool:
    # RFC 3986 §2.3/§6.2.2.2: %2E is an unreserved character in disguise, the same URI as '.'.
    return any(unquote(seg) in (".", "..") for seg in path.split("/"))


@SETTINGS
@given(resource_parts(), st.sampled_from(DOT_SEGMENTS), st.integers(0, 4))
def test_encoded_dot_segments_are_refused_or_resolved(parts, dots, where) -> None:
    """No dot segments, also percent-encoded: refused, or the canonical path has none left."""
    scheme, host, port, path, trail, query = parts
    segs = path.split("/")[1:]
    segs.insert(min(where, len(segs)), dots)
    result = canonical_or_none(build(scheme, host, port, "".join("/" + s for s in segs), trail, query))
    assert result is None or not _has_dot_segment(urlsplit(result).path)


# Look-alikes that are other code points for good: the canonical form must tell them apart.
CONFUSABLES = {
    "a": ["\u0430", "\u03b1", "\u0251"], "c": ["\u0441", "\u03f2"], "e": ["\u0435", "\u0451"],
    "i": ["\u0456", "\u0131", "\u03b9"], "o": ["\u043e", "\u03bf", "\u0585", "\u00f6"], "p": ["\u0440", "\u03c1"],
    "x": ["\u0445", "\u03c7"], "y": ["\u0443"], "s": ["\u0455"], "l": ["\u04cf", "\u0142"], "n": ["\u0578"],
}
# Compatibility forms (fullwidth, mathematical, ignorable) that UTS #46 maps to the ASCII host itself:
# the same DNS name, so equal canonical forms are right for these.
COMPATIBLE = {c: [chr(ord(c) - ord("a") + 0xFF41), chr(ord(c) - ord("a") + 0x1D41A)] for c in LETTERS}


def _uts46(host: str) -> str | None:
    try:
        return idna.encode(host, uts46=True).decode("ascii").lower()
    except idna.IDNAError:
        return None


@st.composite
def look_alike_hosts(draw, table):
    host = draw(dns_hosts.filter(lambda h: any(c in table for c in h)))
    spots = [i for i, c in enumerate(host) if c in table]
    spot = draw(st.sampled_from(spots))
    return host, host[:spot] + draw(st.sampled_from(table[host[spot]])) + host[spot + 1:]


@SETTINGS
@given(look_alike_hosts(CONFUSABLES), st.sampled_from(["", "/mcp"]))
@example(("mcp.example.com", "mcp.ex\u0430mple.com"), "/x")
def test_unicode_look_alike_hosts_never_equal_the_ascii_host(hosts_pair, path) -> None:
    """Non-ASCII hosts become IDNA, so a look-alike (Cyrillic 'а', Greek 'ο', ...) never equals the ASCII host."""
    ascii_host, look_alike = hosts_pair
    canonical = canonical_or_none(f"https://{look_alike}{path}")
    assert canonical != canonical_resource(f"https://{ascii_host}{path}")
    if canonical is not None:
        assert urlsplit(canonical).hostname == _uts46(look_alike)


@SETTINGS
@given(look_alike_hosts(COMPATIBLE))
def test_compatibility_forms_canonicalise_like_browsers_do(hosts_pair) -> None:
    """A host equals the ASCII host only when UTS #46 makes them the same name (fullwidth 'ｅ' is 'e')."""
    ascii_host, variant = hosts_pair
    canonical = canonical_or_none(f"https://{variant}/x")
    assert canonical is None or urlsplit(canonical).hostname == _uts46(variant) == ascii_host


@SETTINGS
@given(dns_hosts, st.integers(0, 20), st.sampled_from(["\u00df", "\u03c2", "\u200d", "\u200c"]))
@example("fass.example", 2, "\u00df")
def test_deviation_characters_never_fold_into_another_host(host, where, deviation) -> None:
    """A host with an IDNA deviation character is never canonicalised to a different host than UTS #46 names."""
    label = host.split(".")[0]
    spot = min(where, len(label))
    variant = label[:spot] + deviation + label[spot:] + host[len(label):]
    if deviation == "\u00df" and "ss" in host:
        variant = host.replace("ss", "\u00df", 1)
    canonical = canonical_or_none(f"https://{variant}/x")
    assert canonical is None or urlsplit(canonical).hostname == _uts46(variant)
