"""Egress extraction and host normalisation (relay/firewall/egress.py)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.firewall.egress import extract_hosts, hosts_in_url, normalise_host
from relay.firewall.subjects import Host

LOOPBACK = Host("127.0.0.1", IPv4Address("127.0.0.1"))
V6_LOOPBACK = Host("::1", IPv6Address("::1"))


def v4(text: str) -> Host:
    return Host(text, IPv4Address(text))


def v6(text: str) -> Host:
    ip = IPv6Address(text)
    return Host(ip.compressed, ip)


def name(text: str) -> Host:
    return Host(text)


NORMALISED: list[tuple[str, Host]] = [
    # case, trailing dots, port, userinfo
    ("Example.COM", name("example.com")),
    ("example.com.", name("example.com")),
    ("example.com...", name("example.com")),
    ("example.com:8080", name("example.com")),
    ("example.com.:443", name("example.com")),
    ("example.com:", name("example.com")),
    ("user:pw@example.com", name("example.com")),
    ("a@b@example.com:1", name("example.com")),
    ("example.com/some/path?q=1", name("example.com")),
    ("  example.com  ", name("example.com")),
    ("localhost", name("localhost")),
    ("_dmarc.example.com", name("_dmarc.example.com")),
    # percent-decoding inside the host
    ("%6c%6fcalhost", name("localhost")),
    ("%6C%6FCALHOST", name("localhost")),
    ("%31%32%37.0.0.1", LOOPBACK),
    ("ex%61mple.com", name("example.com")),
    ("user%40@evil.com", name("evil.com")),
    ("%E4%BE%8B.com", name("xn--fsq.com")),
    # IDNA
    ("B\u00fccher.example", name("xn--bcher-kva.example")),
    ("xn--bcher-kva.example", name("xn--bcher-kva.example")),
    ("XN--BCHER-KVA.EXAMPLE", name("xn--bcher-kva.example")),
    ("\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", name("example.com")),
    ("example\u3002com", name("example.com")),
    ("example\uff0ecom", name("example.com")),
    ("example\uff61com", name("example.com")),
    ("example.com\u3002", name("example.com")),
    ("\u4f8b\u3048.\u30c6\u30b9\u30c8", name("xn--r8jz45g.xn--zckzah")),
    ("fa\u00df.de", name("xn--fa-hia.de")),
    ("ex\u00adample.com", name("example.com")),
    ("a_b.\u4f8b", name("a_b.xn--fsq")),  # idna rejects "_": the built-in codec converts
    ("\u2488com", name("1.com")),  # idna rejects U+2488: the built-in codec maps it
    ("\ud800x.com", name("\ud800x.com")),  # nothing converts it: kept, lowercased
    ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", LOOPBACK),  # fullwidth digits
    ("127\u30020\u30020\u30021", LOOPBACK),
    # IPv4, every WHATWG spelling
    ("127.0.0.1", LOOPBACK),
    ("2130706433", LOOPBACK),
    ("0x7f000001", LOOPBACK),
    ("0X7F000001", LOOPBACK),
    ("017700000001", LOOPBACK),
    ("0177.0.0.1", LOOPBACK),
    ("0x7f.0.0.1", LOOPBACK),
    ("0x7f.0x0.0x0.0x1", LOOPBACK),
    ("127.1", LOOPBACK),
    ("127.0.1", LOOPBACK),
    ("0x7f.1", LOOPBACK),
    ("0177.1", LOOPBACK),
    ("127.0.0.1.", LOOPBACK),
    ("127.0.0.1:80", LOOPBACK),
    ("127.0.0.01", LOOPBACK),
    ("0x.0x.0x.0x", v4("0.0.0.0")),
    ("0", v4("0.0.0.0")),
    ("4294967295", v4("255.255.255.255")),
    ("169.254.169.254", v4("169.254.169.254")),
    ("0xA9FEA9FE", v4("169.254.169.254")),
    ("10.0.0.1", v4("10.0.0.1")),
    # invalid numeric hosts: kept by name
    ("256.256.256.256", name("256.256.256.256")),
    ("1.2.3.4.5", name("1.2.3.4.5")),
    ("4294967296", name("4294967296")),
    ("1.256.0.0.", name("1.256.0.0")),
    ("127.0.0.0x100", name("127.0.0.0x100")),
    ("09.1.1.1", name("09.1.1.1")),
    ("0xg.1", name("0xg.1")),
    ("foo.0x7f", name("foo.0x7f")),
    ("1..1", name("1..1")),
    ("9" * 5000, name("9" * 5000)),
    # IPv6
    ("[::1]", V6_LOOPBACK),
    ("[::1]:8080", V6_LOOPBACK),
    ("[0:0:0:0:0:0:0:1]", V6_LOOPBACK),
    ("[fe80::1%25eth0]", v6("fe80::1")),
    ("[fe80::1%eth0]:80", v6("fe80::1")),
    ("[FE80::0001]", v6("fe80::1")),
    ("::1", V6_LOOPBACK),
    ("fe80::1", v6("fe80::1")),
    ("fe80::1%eth0", v6("fe80::1")),
    ("2001:DB8:0:0::1", v6("2001:db8::1")),
    ("[::ffff:127.0.0.1]", LOOPBACK),
    ("::ffff:127.0.0.1", LOOPBACK),
    ("::ffff:7f00:1", LOOPBACK),
    ("[::ffff:a9fe:a9fe]", v4("169.254.169.254")),
    ("::127.0.0.1", v6("::7f00:1")),  # IPv4-compatible (deprecated) stays IPv6
    ("64:ff9b::7f00:1", v6("64:ff9b::7f00:1")),  # NAT64: IPv6 here, both in URLs
]

NOT_HOSTS = [
    "",
    "   ",
    ".",
    "...",
    "a b.com",
    "example.com:abc",
    "example.com:80:90",
    "[::1",
    "[garbage]",
    "[::1]x",
    "[::1]:http",
    "a:b:c",
    "exa<mple.com",
    "evil.com%2fpath",
    "evil%.com",
    "example.com\uff1a80",  # a fullwidth colon maps to ":" and the name is invalid
]


@pytest.mark.parametrize(("text", "expected"), NORMALISED)
def test_normalise_host(text: str, expected: Host) -> None:
    assert normalise_host(text) == expected


@pytest.mark.parametrize("text", NOT_HOSTS)
def test_normalise_host_rejects_implausible(text: str) -> None:
    assert normalise_host(text) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Example.com./path", ["example.com"]),
        ("https://user:pw@example.com:8443/x", ["example.com"]),
        ("http://%6c%6fcalhost/", ["localhost"]),
        ("http://%31%32%37.0.0.1/", ["127.0.0.1"]),
        ("http://2130706433/", ["127.0.0.1"]),
        ("http://[::1]:8080/", ["::1"]),
        ("http://[fe80::1%25eth0]/", ["fe80::1"]),
        ("http://[::ffff:127.0.0.1]/", ["127.0.0.1"]),
        ("http://[64:ff9b::7f00:1]/", ["64:ff9b::7f00:1", "127.0.0.1"]),
        ("http://[64:ff9b::a9fe:a9fe]/latest", ["64:ff9b::a9fe:a9fe", "169.254.169.254"]),
        ("HTTP://EXAMPLE.COM", ["example.com"]),
        ("http://\u0435xample.com/", ["xn--xample-2of.com"]),  # Cyrillic e
        ("//cdn.example.com/lib.js", ["cdn.example.com"]),
        ("\\\\evil.com/x", ["evil.com"]),
        ("ftp://files.example.org", ["files.example.org"]),
        ("wss://socket.example.org:443/ws", ["socket.example.org"]),
        ("git+ssh://git@github.com/org/repo", ["github.com"]),
        ("redis://:secret@cache.internal:6379/0", ["cache.internal"]),
        ("mailto:user@Example.com", ["example.com"]),
        ("mailto:a@x.com,b@y.com?cc=c@z.com&subject=hi", ["x.com", "y.com", "z.com"]),
        ("mailto:", []),
        ("file:///etc/passwd", []),
        ("file://fileserver/share", ["fileserver"]),
        ("javascript:alert(1)", []),
        ("urn:isbn:0451450523", []),
        ("data:text/plain,hello", []),
        ("not a url", []),
        ("example.com/path", []),
        ("http://", []),
        ("http://[::1", []),
        # WHATWG preprocessing and special-scheme leniency
        ("  http://exa\tm\nple.com/ ", ["example.com"]),
        ("\x00\x1fhttp://example.com", ["example.com"]),
        ("http:example.com", ["example.com"]),
        ("http:/example.com", ["example.com"]),
        ("https:\\\\example.com\\x", ["example.com"]),
        ("http:///example.com", ["example.com"]),
    ],
)
def test_hosts_in_url(url: str, expected: list[str]) -> None:
    assert [host.name for host in hosts_in_url(url)] == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://evil.com\\@good.com/", {"evil.com", "good.com"}),
        ("http://good.com#@evil.com", {"good.com", "evil.com"}),
        ("http://a.com?@b.com", {"a.com", "b.com"}),
        ("http://a.com?x=1@b.com/", {"a.com", "b.com"}),
        ("http://user@evil.com@good.com/", {"good.com"}),
        ("http://evil.com%40good.com/", {"good.com"}),
        ("foo://evil.com\\@good.com/", {"evil.com", "good.com"}),
        ("http://good.com/@evil.com", {"good.com"}),  # after the path: no parser's host
        ("http://127.0.0.1\\@example.com/", {"127.0.0.1", "example.com"}),
    ],
)
def test_hosts_in_url_parser_differentials(url: str, expected: set[str]) -> None:
    hosts = hosts_in_url(url)
    assert {host.name for host in hosts} == expected
    assert len(hosts) == len(set(hosts))


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ("https://example.com/x", ["example.com"]),
        ("get https://a.com/x and http://B.com:80, then //c.org/y", ["a.com", "b.com", "c.org"]),
        ("see (https://a.com/x), [l](http://b.com) <http://c.com>.", ["a.com", "b.com", "c.com"]),
        ('{"u": "http://inner.com/x"}', ["inner.com"]),
        ("`curl http://127.1:80/`", ["127.0.0.1"]),
        ("write to mailto:ops@corp.example", ["corp.example"]),
        ("http://evil.com\\@good.com/", ["evil.com", "good.com"]),
        ("http://exam\nple.com/", ["exam", "example.com"]),  # as text, and whole
        ("http:evil.com", ["evil.com"]),
        # whole strings that are hosts
        ("example.com", ["example.com"]),
        ("api.example.co.uk", ["api.example.co.uk"]),
        ("evil.com:443/x", ["evil.com"]),
        ("metadata.google.internal", ["metadata.google.internal"]),
        ("xn--bcher-kva.example", ["xn--bcher-kva.example"]),
        ("B\u00fccher.de", ["xn--bcher-kva.de"]),
        ("\u4f8b\u3048.\u30c6\u30b9\u30c8", ["xn--r8jz45g.xn--zckzah"]),
        ("127.0.0.1", ["127.0.0.1"]),
        ("10.0.0.1:22", ["10.0.0.1"]),
        ("0177.0.0.1", ["127.0.0.1"]),
        ("0x7f.1", ["127.0.0.1"]),
        ("[::1]:80/x", ["::1"]),
        ("::1", ["::1"]),
        ("fe80::1%eth0", ["fe80::1"]),
        ("64:ff9b::7f00:1", ["64:ff9b::7f00:1", "127.0.0.1"]),
        ("git@github.com:org/repo.git", ["github.com"]),
        ("\\\\files.corp.example\\share", ["files.corp.example"]),
        ("\\\\fileserver\\share", ["fileserver"]),  # a UNC path names a host
        ("//cdn.example.com/lib.js", ["cdn.example.com"]),
        ("//2130706433/", ["127.0.0.1"]),
        ("user:pw@evil.com", ["evil.com"]),
        # nested, deduplicated, first-seen order, values only
        ({"a": [{"b": ["x.com", {"c": "http://y.com"}]}, "x.com"]}, ["x.com", "y.com"]),
        ([[["http://one.com"]], {"k": ("two.com",)}], ["one.com", "two.com"]),
        ({"http://key.com": "value", "example.com": 1}, []),
        ({"a": "http://127.0.0.1/", "b": "http://2130706433/", "c": "0x7f.0.0.1"}, ["127.0.0.1"]),
        ([None, True, 1.5, 7, {"n": None}], []),
    ],
)
def test_extract_hosts(arguments: Any, expected: list[str]) -> None:
    assert [host.name for host in extract_hosts(arguments)] == expected


@pytest.mark.parametrize(
    "arguments",
    [
        "file.txt",
        "os.path",
        "main.py",
        "README.md",
        "archive.zip",
        "config.yaml",
        "json.loads",
        "v1.2",
        "1.2.3",
        "3.11",
        "2.0.1rc1",
        "1.2.3.4.5",
        "256.256.256.256",
        "127.1",  # short decimal forms read as versions outside host keys and URLs
        "2130706433",
        "0x1f",
        "007",
        "hello",
        "localhost",
        "metadata",
        "hello world",
        "a@b.com",
        "Contact a@b.com for details",
        "ops@corp.example.com",
        "12:30:45",
        "Note: hi",
        "a:b",
        "path/to/file.txt",
        "./relative/path.com",
        "C:\\Users\\me",
        "example.com extra words",
        "localhost:8080",
        "//TODO: fix",
        "x = a//b.c",
        "\\\\d+",
        "",
        {"path": "src/app/main.py", "content": "print('hi')", "line": 3},
    ],
)
def test_extract_hosts_ignores_non_hosts(arguments: Any) -> None:
    assert extract_hosts(arguments) == []


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"host": "localhost"}, ["localhost"]),
        ({"Hostname": "Metadata"}, ["metadata"]),
        ({"server": "db:5432"}, ["db"]),
        ({"ip": "2130706433"}, ["127.0.0.1"]),
        ({"ip": 2130706433}, ["127.0.0.1"]),
        ({"addr": 0}, ["0.0.0.0"]),
        ({"address": "127.1"}, ["127.0.0.1"]),
        ({"address": "alice@example.com"}, ["example.com"]),  # read as user@host
        ({"target": "1.2.3.4.5"}, ["1.2.3.4.5"]),
        ({"dest": "0x1f"}, ["0.0.0.31"]),
        ({"url": ["svc-a", "svc-b.internal/x"]}, ["svc-a", "svc-b.internal"]),
        ({"base_url": "http://api.local/v1"}, ["api.local"]),
        ({"webhook": "hooks.example.com/abc"}, ["hooks.example.com"]),
        ({"callback_url": "cb"}, ["cb"]),
        ({"upstream_host": "backend"}, ["backend"]),
        ({"proxy-uri": "squid:3128"}, ["squid"]),
        ({"endpoint": "[::1]:9000"}, ["::1"]),
        ({"domain": "intranet"}, ["intranet"]),
        ({"callback": "https://x.com/cb"}, ["x.com"]),
        ({"baseUrl": "svc", "callbackURL": "cb", "proxyHost": "squid"}, ["svc", "cb", "squid"]),
        ({"curl": "svc", "GHOST": "x", "hosts": "h", "url_path": "p"}, []),
        ({"url": "//svc/x"}, ["svc"]),
        ({"ip": True, "host": None, "addr": 1.5, "url": -1}, []),
        ({"host": 10**5000}, []),
        ({"host": "not a host"}, []),
        ({"host": "javascript:alert(1)"}, []),
        ({"host": "file:///etc/passwd"}, []),
        ({"host": {"name": "inner"}}, []),  # lenient reading does not cross into dicts
        ({"name": "localhost", "id": 2130706433}, []),
    ],
)
def test_extract_hosts_reads_destination_keys_leniently(
    arguments: Any, expected: list[str]
) -> None:
    assert [host.name for host in extract_hosts(arguments)] == expected


def test_extract_hosts_keeps_ips() -> None:
    assert extract_hosts({"url": "http://[::ffff:7f00:1]/"}) == [LOOPBACK]
    assert extract_hosts(["http://[64:ff9b::7f00:1]/"]) == [v6("64:ff9b::7f00:1"), LOOPBACK]


def test_extract_hosts_caps_depth() -> None:
    shallow: Any = "http://shallow.com"
    deep: Any = "http://deep.com"
    for _ in range(60):
        shallow = [shallow]
    for _ in range(200):
        deep = {"k": [deep]}
    assert [host.name for host in extract_hosts(shallow)] == ["shallow.com"]
    assert extract_hosts(deep) == []


def test_extract_hosts_scans_only_the_first_mebibyte() -> None:
    early = "http://early.com " + "x " * (1 << 19)
    assert [host.name for host in extract_hosts(early + "http://late.com")] == ["early.com"]
    assert extract_hosts("a" * (2 << 20)) == []


def test_extract_hosts_hostile_strings_are_fast_enough() -> None:
    for hostile in ("a" * 200_000, "a:" * 100_000, "/" * 200_000, "http://" + "@" * 100_000):
        extract_hosts({"url": hostile, "text": hostile})


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text()
    | st.text(alphabet=st.sampled_from(list("0123456789abcdefx.:/@[]%\\#?\u3002\uff0e")))
    | st.sampled_from(["http://", "//", "mailto:", "[::", "0x", "xn--", "%25"]).flatmap(
        lambda prefix: st.text(max_size=30).map(lambda rest: prefix + rest)
    ),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(["host", "url", "ip", "x", "base_url", "text"]) | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_extract_hosts_never_raises_and_names_are_canonical(arguments: Any) -> None:
    hosts = extract_hosts(arguments)
    assert len(hosts) == len(set(hosts))
    for host in hosts:
        assert host.name
        if host.ip is not None:
            assert host.name == str(host.ip)
            if isinstance(host.ip, IPv6Address):
                assert host.name == host.ip.compressed
                assert host.ip.ipv4_mapped is None
