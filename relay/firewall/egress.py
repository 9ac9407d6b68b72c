"""Egress extraction: every host a tool call's arguments could send data to, canonicalised.

So that a deny rule for `127.0.0.0/8` or `metadata.google.internal` cannot be bypassed by
spelling, hosts become canonical `Host`s (firewall/subjects.py): percent-decoded, without
userinfo, port or trailing dots, case-folded, Unicode names as IDNA A-labels, IPv4 in every
WHATWG form (`2130706433`, `0x7f.1`, `0177.0.0.1`) as the dotted quad, IPv4-mapped IPv6 as
IPv4; a NAT64 address (`64:ff9b::/96`) also yields its IPv4. A name that cannot be made
canonical is kept lowercased, never dropped, so the policy still sees it.

`hosts_in_url` over-includes on purpose: fetchers disagree on `http://evil.com\\@good.com/`
or `http://good.com#@evil.com`, so it returns the union of what a WHATWG, an RFC 3986 and
a lenient "host after the last @" parser would reach (`https://a.com?u=x@b.com` gives both).

`extract_hosts` reads string values (never keys) three ways: URLs anywhere in the text; a
whole string that is a host, host:port or host/path — a dotted name with a known TLD (so
`file.txt`, `os.path`, `main.py` are not; a TLD missing from the list is only seen in URLs
and host keys), or an IP literal (dotted quads and hex forms; `3.11` or `127.1` read as
versions); and leniently the values of destination-named keys (`host`, `url`, `*_url`,
`baseUrl`, ...), where `localhost` and integers count. Decision: an e-mail address in text
(`a@b.com`) is not egress unless written as a `mailto:` URL or given under such a key (read
as ssh-style `user@host`). Nesting deeper than 64 is not walked; a string's first 1 MiB is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Any
from urllib.parse import unquote

import idna

from relay.firewall.subjects import Host

__all__ = ["extract_hosts", "hosts_in_url", "normalise_host"]

MAX_DEPTH = 64
SCAN_LIMIT = 1 << 20  # characters of one string that are scanned
_IDNA_LIMIT = 1024  # longer names are not IDNA-converted (DNS names are at most 253)
_SPECIAL = frozenset({"http", "https", "ws", "wss", "ftp", ""})  # "" = scheme-relative
_SCHEME_RELATIVE = ("//", "\\\\", "/\\", "\\/")  # WHATWG reads "\" as "/"
_NAT64 = IPv6Network("64:ff9b::/96")
_HOST_KEYS = frozenset(
    "host hostname domain server address addr ip url uri endpoint base_url target destination"
    " dest webhook callback".split()
)
_HOST_KEY_SUFFIXES = ("_url", "_host", "_uri")
_CAMEL_HOST_KEY_RE = re.compile(r"[a-z0-9](?:Url|URL|Uri|URI|Host|HOST|Hostname)$")
# Bare strings are hosts only with one of these last labels (or an xn-- one): country codes
# minus those that are common file extensions (py, md, sh, ...), and common generic TLDs.
_TLDS = frozenset(
    "ac ad ae af ag ai al ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bm bn bo bq br"
    " bs bt bw by bz ca cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do dz ec"
    " ee eg er es et eu fi fj fk fm fo fr ga gb gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw"
    " gy hk hm hn hr ht hu id ie il im io iq ir is it je jm jo jp ke kg kh ki km kn kp kr kw ky"
    " kz lb lc li lk lr ls lt lu lv ly ma mc me mg mh mn mp mq mr ms mt mu mv mw mx my mz na nc"
    " ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pn pr pt pw qa re ro ru rw sa sb sd se"
    " sg si sk sl sm sn sr ss su sv sx sy sz tc td tg th tj tk tl tm tn to tr tt tv tw tz ua ug"
    " uk us uy uz va vc ve vg vi vn vu wf ws ye yt za zm zw"
    " com net org edu gov mil int arpa info biz name pro mobi asia tel travel jobs aero coop"
    " museum cat post xxx app dev page cloud online site tech store shop xyz top club live blog"
    " news email link click space website fun icu vip win life world today digital network"
    " systems solutions services agency company global group team zone tools works ninja"
    " design media studio wiki software host hosting security google amazon aws microsoft azure"
    " apple lol wtf bank money finance exchange games social chat video music photo love health"
    " support ltd gmbh berlin nyc local localhost internal lan home corp onion test example"
    " invalid".split()
)

_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_DROP_TAB_NEWLINE = str.maketrans("", "", "\t\n\r")
_DOTS = str.maketrans("\u3002\uff0e\uff61", "...")  # ideographic / fullwidth full stops
_DELIMS = "\"'<>`"
_URL_RE = re.compile(
    r"(?:[a-zA-Z][a-zA-Z0-9+.\-]{0,31}://|(?i:https?|wss?|ftp):[/\\]|(?i:mailto):"
    r"|(?<![^\s" + _DELIMS + r"(\[{=,;|])//)[^\s" + _DELIMS + r"]*"
)
_SCHEME_RE = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*):")
_PORT_RE = re.compile(r"[0-9]*")
_DEC_RE = re.compile(r"[0-9]+")
_OCT_RE = re.compile(r"[0-7]+")
_HEX_RE = re.compile(r"[0-9a-fA-F]*")
_ENDS_IN_NUMBER_RE = re.compile(r"(?:[0-9]+|0[xX][0-9a-fA-F]*)")
_FORBIDDEN_RE = re.compile(r"[\x00-\x20\x7f#%/:<>?@\[\\\]^|\"]")
_BARE_NAME_RE = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?\.)+([a-z]{2,63}|xn--[a-z0-9-]+)")
_WHITESPACE_RE = re.compile(r"\s")
_UNC_RE = re.compile(r"\\\\[^\\/\s]+\\[^\\/\s]")
_MAILTO_RE = re.compile(r"mailto:", re.IGNORECASE)
_HOST_HINT_RE = re.compile(r"[.:%\u3002\uff0e\uff61]")
_TRAILING_PUNCT = ".,;:!?)}"
_CACHE_SIZE = 4096
_CACHED_STRING_LIMIT = 2048


@functools.lru_cache(maxsize=_CACHE_SIZE)  # Host is immutable; the same hosts recur
def normalise_host(text: str) -> Host | None:
    """A host as written (no scheme), possibly with port, brackets, userinfo-free.

    None when it is not a plausible host. A path after the host is ignored.
    """
    text = _cut(text.strip(), "/?#").rpartition("@")[2]
    if text.startswith("["):
        inside, close, rest = text[1:].partition("]")
        if not close or (rest and (rest[0] != ":" or not _PORT_RE.fullmatch(rest, 1))):
            return None
        return _ipv6_host(inside)
    if text.count(":") >= 2:  # bare IPv6; its zone id is not percent-decoded
        return _ipv6_host(text) or _ipv6_host(unquote(text, errors="replace"))
    text = unquote(text, errors="replace").rpartition("@")[2].translate(_DOTS)
    if text.count(":") >= 2:
        return _ipv6_host(text)
    name, _, port = text.partition(":")
    if not _PORT_RE.fullmatch(port):
        return None
    return _name_host(name)


def _name_host(name: str) -> Host | None:
    name = name.rstrip(".")
    if not name.isascii():
        name = _to_ascii(name).rstrip(".")
    name = name.lower()
    if not name or _FORBIDDEN_RE.search(name):
        return None
    ip = _parse_ipv4(name)
    return Host(str(ip), ip) if ip is not None else Host(name)


def _to_ascii(name: str) -> str:
    if len(name) > _IDNA_LIMIT:
        return name
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except (UnicodeError, ValueError):
        pass
    try:
        return name.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return name


def _parse_ipv4(name: str) -> IPv4Address | None:
    """WHATWG IPv4: 1-4 parts, decimal/octal/hex, the last filling the remaining bytes."""
    parts = name.split(".")
    if not _ENDS_IN_NUMBER_RE.fullmatch(parts[-1]) or len(parts) > 4:
        return None
    numbers = [_ipv4_number(part) for part in parts]
    *head, last = numbers
    if last is None or any(n is None or n > 255 for n in head):
        return None
    if last >= 256 ** (5 - len(parts)):
        return None
    value = last + sum(n << (8 * (3 - i)) for i, n in enumerate(head) if n is not None)
    return IPv4Address(value)


def _ipv4_number(part: str) -> int | None:
    if len(part) > 40:  # overflows anyway; keeps int() away from huge inputs
        return None
    if part[:2] in ("0x", "0X"):
        return int(part[2:] or "0", 16) if _HEX_RE.fullmatch(part[2:]) else None
    if len(part) > 1 and part[0] == "0":
        return int(part[1:], 8) if _OCT_RE.fullmatch(part[1:]) else None
    return int(part) if _DEC_RE.fullmatch(part) else None


def _ipv6_host(text: str) -> Host | None:
    try:
        ip = IPv6Address(text.partition("%")[0])  # the zone id (%25eth0 or %eth0) goes
    except ValueError:
        return None
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return Host(str(mapped), mapped)
    return Host(ip.compressed, ip)


def _cut(text: str, stops: str) -> str:
    """`text` up to the first character in `stops`."""
    end = len(text)
    for stop in stops:
        found = text.find(stop, 0, end)
        if found >= 0:
            end = found
    return text[:end]


def _distinct(hosts: Iterable[Host | None]) -> list[Host]:
    """The hosts once each, in order; a NAT64 address followed by the IPv4 it embeds."""
    found: dict[Host, None] = {}
    for host in hosts:
        if host is not None:
            found[host] = None
            if isinstance(host.ip, IPv6Address) and host.ip in _NAT64:
                v4 = IPv4Address(int(host.ip) & 0xFFFFFFFF)
                found[Host(str(v4), v4)] = None
    return list(found)


def hosts_in_url(url: str) -> list[Host]:
    """Every host a URL may reach (under any common parser); [] when it has no authority."""
    url = url.strip(_C0_AND_SPACE).translate(_DROP_TAB_NEWLINE)
    match = _SCHEME_RE.match(url)
    if match is not None:
        scheme, rest = match.group(1).lower(), url[match.end() :]
    elif url[:2] in _SCHEME_RELATIVE:
        scheme, rest = "", url
    else:
        return []
    if scheme == "mailto":
        return _distinct(_mailto_hosts(rest))
    return _distinct(normalise_host(part) for part in _host_parts(scheme, rest))


def _host_parts(scheme: str, rest: str) -> list[str]:
    """The host(+port) text of the URL's authority as each kind of parser sees it."""
    parts: list[str] = []
    if scheme in _SPECIAL:  # WHATWG: any run of "/" and "\" opens the authority
        body = rest.lstrip("/\\")
        parts.append(_cut(body, "/\\?#"))
    elif scheme == "file" and rest[:2] in _SCHEME_RELATIVE:
        body = rest[2:]
        parts.append(_cut(body, "/\\?#"))
    elif rest.startswith("//"):
        body = rest[2:]
    else:
        return []
    if rest.startswith("//"):  # RFC 3986: "\" is an ordinary character
        parts.append(_cut(rest[2:], "/?#"))
    # Lenient parsers take the host after the last "@" before the path, even past "?"/"#".
    parts.append(_cut(_cut(body, "/\\").rpartition("@")[2], "?#"))
    return [part.rpartition("@")[2] for part in parts]


def _mailto_hosts(rest: str) -> list[Host | None]:
    to, _, query = _cut(rest, "#").partition("?")
    addresses = to.split(",")
    for field in query.split("&"):
        key, _, value = field.partition("=")
        if key.lower() in ("to", "cc", "bcc"):
            addresses.extend(unquote(value, errors="replace").split(","))
    hosts: list[Host | None] = []
    for address in addresses:
        address = unquote(address, errors="replace").strip().rstrip(">")
        if "@" in address:
            hosts.append(normalise_host(address.rpartition("@")[2]))
    return hosts


def extract_hosts(arguments: Any) -> list[Host]:
    """Every distinct host found anywhere in JSON-like arguments, in first-seen order.

    Arguments are dict/list/str/int/float/bool/None, nested; hosts are deduplicated by
    `Host` equality. Never raises.
    """
    found: list[Host | None] = []
    _walk(arguments, found, False, 0)
    return _distinct(found)


def _walk(value: Any, found: list[Host | None], lenient: bool, depth: int) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(value, str):
        _scan_string(value, found, lenient)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, found, isinstance(key, str) and _is_host_key(key), depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk(item, found, lenient, depth + 1)
    elif lenient and isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < 1 << 64:
            found.append(normalise_host(str(value)))


def _is_host_key(key: str) -> bool:
    lowered = key.lower().replace("-", "_")
    return (
        lowered in _HOST_KEYS
        or lowered.endswith(_HOST_KEY_SUFFIXES)
        or _CAMEL_HOST_KEY_RE.search(key) is not None  # baseUrl, callbackURL, proxyHost
    )


def _scan_string(value: str, found: list[Host | None], lenient: bool) -> None:
    # Agents send the same URLs and hosts over and over: short strings are memoised.
    if len(value) <= _CACHED_STRING_LIMIT:
        found.extend(_string_hosts(value, lenient))
    else:
        _scan_string_once(value, found, lenient)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _string_hosts(value: str, lenient: bool) -> tuple[Host | None, ...]:
    found: list[Host | None] = []
    _scan_string_once(value, found, lenient)
    return tuple(found)


def _scan_string_once(value: str, found: list[Host | None], lenient: bool) -> None:
    head = value[:SCAN_LIMIT]
    if "//" in head or ":/" in head or ":\\" in head or (":" in head and _MAILTO_RE.search(head)):
        for match in _URL_RE.finditer(head):
            url = match.group().rstrip(_TRAILING_PUNCT)
            if url.endswith("]") and "[" not in url:
                url = url[:-1]
            _add_url_hosts(url, found, lenient)
    text = head.strip()
    if text[:2] in _SCHEME_RELATIVE:  # "//host/x" (also found above), or "\\host\share"
        _add_url_hosts(text, found, lenient)
        return
    if not text or not (lenient or _HOST_HINT_RE.search(text)):
        return  # the fast path: no dot, colon or "%" cannot be a host outside host keys
    scheme = _SCHEME_RE.match(text)
    if scheme is not None:  # a URI such as "x:/..." or "http:host"; or host:port, or IPv6
        hosts = hosts_in_url(text)
        found.extend(hosts)
        if hosts or text[scheme.end() : scheme.end() + 1] in ("/", "\\"):
            return
    if _WHITESPACE_RE.search(text):
        return
    # A destination-named key's value may be any plausible host, even `localhost`.
    found.append(normalise_host(text) if lenient else _bare_host(text))


def _add_url_hosts(url: str, found: list[Host | None], lenient: bool) -> None:
    hosts = hosts_in_url(url)
    # Text like "//TODO" or "\\d+" is no URL: there, a host must look like one, unless
    # the string is a UNC path ("\\server\share").
    if not lenient and url[:2] in _SCHEME_RELATIVE and not _UNC_RE.match(url):
        hosts = [host for host in hosts if host.ip is not None or _is_domain(host.name)]
    found.extend(hosts)


def _bare_host(text: str) -> Host | None:
    """A whole string that looks like a host, host:port or host/path; None otherwise."""
    userinfo, at, text = _cut(text, "/\\?#").rpartition("@")
    if not _HOST_HINT_RE.search(text):
        return None
    if at:
        if ":" not in userinfo and ":" not in text:
            return None  # an e-mail address, not egress (see the module docstring)
        if not text.startswith("["):
            text = text.partition(":")[0]  # user@host:port or scp-style user@host:path
    host = normalise_host(text)
    if host is None:
        return None
    if isinstance(host.ip, IPv6Address):
        return host
    if host.ip is not None:
        return host if _spelled_like_ipv4(text) else None
    return host if _is_domain(host.name) else None


def _is_domain(name: str) -> bool:
    """A dotted name with a known or IDNA top-level label (`file.txt` is not one)."""
    tld = _BARE_NAME_RE.fullmatch(name)
    return tld is not None and (tld.group(1) in _TLDS or tld.group(1).startswith("xn--"))


def _spelled_like_ipv4(text: str) -> bool:
    """Dotted quads, and shorter dotted forms with a hex part (`0x7f.1`).

    `3.11` or `1.2.3` read as versions and `007` or `0x1f` as numbers, so those count only
    in URLs and destination-named keys.
    """
    text = unquote(text, errors="replace").translate(_DOTS).partition(":")[0].rstrip(".")
    labels = text.split(".")
    return len(labels) == 4 or (len(labels) > 1 and any(x[:2] in ("0x", "0X") for x in labels))
