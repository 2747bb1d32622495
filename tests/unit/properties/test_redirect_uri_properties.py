"""Properties of redirect-URI registration and matching (``broker.oauth.redirects``).

OAuth 2.1 and RFC 8252: exact redirect URI matching; a loopback redirect
(127.0.0.1, [::1], localhost) may vary the port only (OAuth 2.1 §2.3.1, RFC 9700 §4.1.3, RFC 8252 §7.3).
So a presented URI matches a registered one when the strings are equal, or when the registered one is
loopback and the presented one differs from it in the port and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from broker.oauth.redirects import InvalidRedirectUri, matches, validate_for_registration
from tests.support.budget import examples

SETTINGS = settings(max_examples=examples(150), derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@dataclass(frozen=True)
class Uri:
    scheme: str
    host: str  # "" for a private-use scheme (com.example.app:/oauth)
    port: int | None
    path: str
    query: str | None  # None: no '?'
    userinfo: str | None = None
    fragment: str | None = None

    def __str__(self) -> str:
        authority = "" if not self.host else "//" + (f"{self.userinfo}@" if self.userinfo is not None else "") + \
            self.host + ("" if self.port is None else f":{self.port}")
        return f"{self.scheme}:{authority}{self.path}" + ("" if self.query is None else f"?{self.query}") + \
            ("" if self.fragment is None else f"#{self.fragment}")

    @property
    def loopback(self) -> bool:
        return self.scheme == "http" and self.host.lower() in ("127.0.0.1", "[::1]", "localhost")


labels = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?\Z")
dns_hosts = st.builds(lambda ls, tld: ".".join([*ls, tld]), st.lists(labels, min_size=1, max_size=3),
                      st.sampled_from(["com", "example", "dev"]))
paths = st.lists(st.from_regex(r"\A[a-zA-Z0-9_~-]{1,8}\Z"), max_size=3).map(lambda s: "".join("/" + x for x in s))
queries = st.one_of(st.none(), st.from_regex(r"\A[a-z]{1,4}=[a-zA-Z0-9]{0,4}\Z"))
ports = st.one_of(st.none(), st.integers(1, 65535))

https_uris = st.builds(Uri, st.just("https"), dns_hosts, ports, paths, queries)
loopback_uris = st.builds(Uri, st.just("http"), st.sampled_from(["127.0.0.1", "[::1]", "localhost"]), ports,
                          paths, queries)
private_uris = st.builds(Uri, st.from_regex(r"\A[a-z][a-z0-9]{1,6}(\.[a-z][a-z0-9]{1,6}){1,2}\Z"), st.just(""),
                         st.none(), paths.map(lambda p: p or "/cb"), st.none())
registrable = st.one_of(https_uris, loopback_uris, private_uris)

CYRILLIC = {"a": "\u0430", "c": "\u0441", "e": "\u0435", "o": "\u043e", "p": "\u0440", "x": "\u0445", "l": "\u04cf"}


def _mutations(uri: Uri, draw) -> list[Uri]:
    """Ways to change a URI in anything but the port."""
    out = [
        replace(uri, scheme={"https": "http", "http": "https"}.get(uri.scheme, uri.scheme + "x")),
        replace(uri, path=uri.path + "/x"), replace(uri, path=uri.path + "/"), replace(uri, path="/" + uri.path),
        replace(uri, path=uri.path[:-1]) if len(uri.path) > 1 else replace(uri, path="/cb2"),
        replace(uri, query="x=1" if uri.query is None else uri.query + "&x=1"),
        replace(uri, fragment=draw(st.text("abc=&", min_size=1, max_size=4))),
    ]
    if uri.query:
        out += [replace(uri, query=None), replace(uri, query=uri.query.upper())]
    letters = [i for i, c in enumerate(uri.path) if c.isalpha()]
    if letters:
        i = draw(st.sampled_from(letters))
        out.append(replace(uri, path=uri.path[:i] + uri.path[i].swapcase() + uri.path[i + 1:]))
        out.append(replace(uri, path=uri.path[:i] + f"%{ord(uri.path[i]):02X}" + uri.path[i + 1:]))
    if uri.host:
        out += [replace(uri, host=uri.host + "."), replace(uri, host="evil." + uri.host.strip("[]")),
                replace(uri, host=uri.host.strip("[]") + ".evil.com"), replace(uri, userinfo="user"),
                replace(uri, userinfo=""), replace(uri, userinfo=uri.host + ":pw", host="evil.com")]
        spots = [i for i, c in enumerate(uri.host) if c in CYRILLIC]
        if spots:
            i = draw(st.sampled_from(spots))
            out.append(replace(uri, host=uri.host[:i] + CYRILLIC[uri.host[i]] + uri.host[i + 1:]))
    return out


@SETTINGS
@given(registrable)
def test_generated_uris_are_registrable(uri) -> None:
    """The generators make only URIs registration accepts (https, http on loopback, private-use schemes)."""
    validate_for_registration(str(uri))


@SETTINGS
@given(st.lists(registrable, min_size=1, max_size=4), st.data())
def test_a_registered_uri_always_matches_itself(registered, data) -> None:
    """Exact matching: every registered URI, presented exactly, matches the set it is in."""
    uris = [str(u) for u in registered]
    assert matches(uris, data.draw(st.sampled_from(uris)))


@SETTINGS
@given(registrable, st.data())
def test_any_change_but_the_port_never_matches(uri, data) -> None:
    """Exact matching: a change of scheme, host, path (also its case or percent-encoding), query, userinfo,
    a fragment, a trailing dot or a Unicode look-alike in the host never matches, on loopback with any port."""
    presented = data.draw(st.sampled_from(_mutations(uri, data.draw)))
    if presented.loopback and uri.loopback:
        presented = replace(presented, port=data.draw(ports))
    assume(str(presented) != str(uri))
    assert not matches([str(uri)], str(presented))


@SETTINGS
@given(st.one_of(https_uris, private_uris), st.one_of(st.just(443), ports))
def test_the_port_of_a_non_loopback_uri_is_part_of_the_exact_match(uri, port) -> None:
    """Only loopback redirects may vary the port; elsewhere even the default ``:443`` is a different URI."""
    assume(uri.host and port != uri.port)
    assert not matches([str(uri)], str(replace(uri, port=port)))


@SETTINGS
@given(loopback_uris, ports)
def test_a_loopback_uri_matches_on_any_port(uri, port) -> None:
    """RFC 8252 §7.3: a native app listens on an ephemeral port, so the loopback port may differ."""
    assert matches([str(uri)], str(replace(uri, port=port)))


@SETTINGS
@given(st.lists(registrable, max_size=4), registrable, ports)
def test_an_unregistered_uri_never_matches(registered, presented, port) -> None:
    """A presented URI matches only a registered URI equal to it, or a loopback one differing in the port."""
    uris = [str(u) for u in registered]
    expected = any(str(presented) == str(u) or (u.loopback and replace(u, port=None) == replace(presented, port=None))
                   for u in registered)
    assert matches(uris, str(presented)) is expected
    if presented.loopback:
        moved = replace(presented, port=port)
        assert matches(uris, str(moved)) is any(u.loopback and replace(u, port=None) == replace(moved, port=None)
                                                for u in registered) or str(moved) in uris


# Characters that Python's urlsplit silently drops (WHATWG: tab/CR/LF anywhere, C0 and space in front).
SWALLOWED = ["\t", "\n", "\r"]
LEADING = [" ", "\x00", "\x01", "\x1f"]


@SETTINGS
@given(loopback_uris, ports, st.sampled_from(SWALLOWED), st.integers(0, 60), st.sampled_from(LEADING))
@example(Uri("http", "127.0.0.1", 9999, "/callback", None), 5, "\t", 20, " ")
def test_invisible_characters_never_make_a_loopback_match(uri, port, char, where, lead) -> None:
    """Exact matching except the port: a presented URI with extra characters in it is another URI."""
    moved = str(replace(uri, port=port))
    spot = min(where, len(moved))
    assert not matches([str(uri)], moved[:spot] + char + moved[spot:])
    assert not matches([str(uri)], lead + moved)


@SETTINGS
@given(loopback_uris, ports)
@example(Uri("http", "127.0.0.1", 9999, "/callback", None), 5)
def test_an_empty_fragment_never_makes_a_loopback_match(uri, port) -> None:
    """No fragment (RFC 6749 §3.1.2): a presented loopback URI ending in '#' is not the registered one."""
    assert not matches([str(uri)], str(replace(uri, port=port)) + "#")


@SETTINGS
@given(loopback_uris.filter(lambda u: u.query is None), ports, st.sampled_from(["scheme", "host", "empty-query"]))
@example(Uri("http", "localhost", 9, "/cb", None), 5, "host")
def test_only_the_port_of_a_loopback_uri_may_vary(uri, port, change) -> None:
    """A loopback redirect may vary the port only: not the case of scheme or host, not an empty query."""
    moved = str(replace(uri, port=port))
    if change == "scheme":
        presented = "HTTP" + moved[4:]
    elif change == "host":
        presented = moved.replace(uri.host, uri.host.upper(), 1)
    else:
        presented = moved.replace(uri.path, uri.path + "?", 1) if uri.path else moved + "?"
    assume(presented != moved)  # an IP address has no case to change
    assert not matches([str(uri)], presented)


# ---------------------------------------------------------------- registration


urlish = st.lists(st.sampled_from([*"abcAB019:/?#[]@!$&'()*+,;=-._~%\\", "\x00", "\x7f", " ", "\u0430", "\ud800",
                                   "https://", "http://", "HTTP://", "localhost", "127.0.0.1", "[::1]", ":99999",
                                   "javascript:", "com.example.app:/", "user@"]), max_size=16).map("".join)


@SETTINGS
@given(st.one_of(st.text(max_size=40), st.text(st.characters(codec=None), max_size=20), urlish))
@example("http://localhost.:80/cb")
@example("https://[::1%25eth0]/cb")
def test_registration_accepts_only_safe_redirects_and_raises_nothing_else(uri) -> None:
    """Registration (OAuth 2.1 §2.3, RFC 8252 §7) raises only ``InvalidRedirectUri``; what it accepts is ASCII,
    has no fragment or userinfo, is https with a host, http on a loopback host, or a private-use scheme."""
    try:
        validate_for_registration(uri)
    except InvalidRedirectUri:
        return
    assert uri.isascii() and "#" not in uri and not any(c.isspace() for c in uri)
    scheme, _, rest = uri.partition(":")
    authority = rest[2:].split("/", 1)[0].split("?", 1)[0] if rest.startswith("//") else ""
    assert "@" not in authority
    if scheme.lower() == "http":
        host = authority.rsplit(":", 1)[0] if not authority.endswith("]") else authority
        assert host.lower() in ("127.0.0.1", "[::1]", "localhost")
    elif scheme.lower() == "https":
        assert authority.split(":")[0] or authority.startswith("[")
    else:
        assert scheme.lower() not in {"javascript", "data", "file", "vbscript", "about", "blob", "ftp", "ws", "wss"}


@SETTINGS
@given(st.one_of(https_uris, loopback_uris), st.data())
def test_registration_refuses_fragments_and_userinfo(uri, data) -> None:
    """No fragment (RFC 6749 §3.1.2), not even an empty one; no user information."""
    with pytest.raises(InvalidRedirectUri):
        validate_for_registration(str(replace(uri, fragment=data.draw(st.text("abc", max_size=3)))))
    with pytest.raises(InvalidRedirectUri):
        validate_for_registration(str(replace(uri, userinfo=data.draw(st.sampled_from(["u", "u:p", ":p"])))))
