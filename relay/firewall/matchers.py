"""The compiled pieces of a firewall rule: name globs, host patterns, argument constraints.

Each is parsed once from its JSON form (errors name the exact field) into something cheap
to ask per subject: a glob list becomes one case-insensitive regex, a host pattern list
becomes sets and networks, an argument path becomes a tuple of steps.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any

import regex

from relay.firewall.egress import normalise_host
from relay.firewall.subjects import Host, IPAddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Per-match budget for a policy author's pattern run on model-written arguments.
PATTERN_TIMEOUT = 0.05
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_PATH = re.compile(r"(?:[^.\[\]]+|\[\d+\])(?:\.[^.\[\]]+|\[\d+\])*")
_STEP = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")
# Pattern text normalise_host would accept but silently trim: userinfo, query, port.
_NOT_A_PATTERN = re.compile(r"[\s@?#%]|\]:|^[^:]*:[^:]*$")
_CHECKS = frozenset({"enum", "pattern", "max_length", "min", "max"})


class PolicyError(ValueError):
    """A policy document is malformed; the message starts with the path at fault."""


def string_list(raw: Any, where: str) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise PolicyError(f"{where}: must be a non-empty array of strings")
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item:
            raise PolicyError(f"{where}[{i}]: must be a non-empty string")
    return raw


@dataclass(frozen=True, slots=True)
class GlobSet:
    """fnmatch-style globs (``*``, ``?``, ``[..]``) folded into one case-insensitive regex."""

    globs: tuple[str, ...]
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, raw: Any, where: str) -> GlobSet:
        globs = tuple(string_list(raw, where))
        joined = "|".join(fnmatch.translate(g) for g in globs)
        return cls(globs, re.compile(joined, re.IGNORECASE))

    def matches(self, text: str | None) -> bool:
        return text is not None and self.regex.match(text) is not None


@dataclass(frozen=True, slots=True)
class HostSet:
    """Host patterns: exact names, ``*.domain`` suffixes, IPs, CIDRs, or ``*`` for any.

    A Host carrying an IP is only compared with IPs and networks, a name only with names
    and suffixes: a policy never guesses what a name resolves to.
    """

    any: bool
    names: frozenset[str]
    suffixes: frozenset[str]
    ips: frozenset[IPAddress]
    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, raw: Any, where: str) -> HostSet:
        names: set[str] = set()
        suffixes: set[str] = set()
        ips: set[IPAddress] = set()
        networks: list[Network] = []
        any_host = False
        for i, text in enumerate(string_list(raw, where)):
            kind, value = parse_host_pattern(text, f"{where}[{i}]")
            if kind == "any":
                any_host = True
            elif isinstance(value, str):
                (suffixes if kind == "suffix" else names).add(value)
            elif isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
                ips.add(value)
            elif value is not None:
                networks.append(value)
        return cls(any_host, frozenset(names), frozenset(suffixes), frozenset(ips),
                   tuple(networks))  # fmt: skip

    def matches(self, host: Host | None) -> bool:
        if host is None:
            return False
        if self.any:
            return True
        ip = host.ip
        if ip is not None:
            return ip in self.ips or any(ip in net for net in self.networks)
        name = host.name
        if name in self.names:
            return True
        if self.suffixes:
            dot = name.find(".")
            while dot != -1:
                if name[dot + 1 :] in self.suffixes:
                    return True
                dot = name.find(".", dot + 1)
        return False


def parse_host_pattern(text: str, where: str) -> tuple[str, str | IPAddress | Network | None]:
    """(kind, canonical value) of one pattern; kinds: any, name, suffix, ip, network.

    CIDRs are parsed leniently (host bits are ignored: ``10.1.2.3/8`` is ``10.0.0.0/8``)
    and IPv4-mapped IPv6 networks become IPv4 ones, since hosts arrive mapped to IPv4.
    """
    bad = PolicyError(f"{where}: {text!r} is not a hostname, IP address or CIDR")
    if text == "*":
        return "any", None
    if _NOT_A_PATTERN.search(text):
        raise bad
    if "/" in text:
        try:
            net: Network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise bad from None
        if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_MAPPED):
            mapped = net.network_address.ipv4_mapped
            assert mapped is not None
            net = ipaddress.IPv4Network((mapped, net.prefixlen - 96))
        return "network", net
    wildcard = text.startswith("*.")
    rest = text[2:] if wildcard else text
    host = None if "*" in rest else normalise_host(rest)
    if host is None:
        raise bad
    if host.ip is not None:
        if wildcard:
            raise PolicyError(f"{where}: {text!r}: a '*.' wildcard needs a domain name")
        return "ip", host.ip
    return ("suffix" if wildcard else "name"), host.name


MISSING: Any = object()  # a path that is not in the arguments


def _scalar_key(value: Any) -> tuple[str, Any] | None:
    """JSON equality for enum membership: 1 == 1.0, but true is not 1."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Constraint:
    """One ``args`` entry: a path into the parsed arguments and checks that must all hold."""

    path: str
    steps: tuple[tuple[str | None, int | None], ...]  # (dict key, list index)
    enum: frozenset[tuple[str, Any]] | None = None
    pattern: Any = None  # a compiled `regex` pattern
    max_length: int | None = None
    min: float | None = None
    max: float | None = None

    @classmethod
    def parse(cls, raw: Any, where: str) -> Constraint:
        if not isinstance(raw, dict):
            raise PolicyError(f"{where}: must be an object")
        unknown = sorted(set(raw) - _CHECKS - {"path"})
        if unknown:
            raise PolicyError(f"{where}: unknown field {unknown[0]!r}")
        path = raw.get("path")
        if not isinstance(path, str) or not _PATH.fullmatch(path):
            raise PolicyError(f"{where}.path: must be a dot path such as 'a.b[0].c'")
        present = _CHECKS & set(raw)
        if not present:
            raise PolicyError(f"{where}: needs at least one of {', '.join(sorted(_CHECKS))}")
        if present & {"min", "max"} and present & {"pattern", "max_length"}:
            raise PolicyError(f"{where}: length/pattern checks and min/max never hold together")
        return cls(path, _steps(path), _enum(raw, where), _pattern(raw, where),
                   _max_length(raw, where), *_bounds(raw, where))  # fmt: skip

    def holds(self, arguments: Any) -> bool:
        value = self.resolve(arguments)
        return value is not MISSING and self.check(value)

    def resolve(self, arguments: Any) -> Any:
        """The value at the path, or MISSING."""
        value = arguments
        for key, index in self.steps:
            if key is not None and type(value) is dict:
                value = value.get(key, MISSING)
                if value is MISSING:
                    return MISSING
            elif index is not None and type(value) is list and index < len(value):
                value = value[index]
            else:
                return MISSING
        return value

    def check(self, value: Any) -> bool:
        kind = type(value)
        if self.enum is not None and _scalar_key(value) not in self.enum:
            return False
        if self.pattern is not None:
            if kind is not str:
                return False
            # A TimeoutError propagates: the rule decides what an unknown answer means.
            if self.pattern.fullmatch(value, timeout=PATTERN_TIMEOUT) is None:
                return False
        if self.max_length is not None and (
            (kind is not str and kind is not list) or len(value) > self.max_length
        ):
            return False
        if self.min is not None or self.max is not None:
            if kind is not int and kind is not float:  # JSON numbers; bool is not one
                return False
            if self.min is not None and value < self.min:
                return False
            if self.max is not None and value > self.max:
                return False
        return True


def _steps(path: str) -> tuple[tuple[str | None, int | None], ...]:
    """``[n]`` indexes a list only; ``.n`` is a dict key, or an index if the value is a list."""
    steps: list[tuple[str | None, int | None]] = []
    for match in _STEP.finditer(path):
        bracket, key = match.groups()
        if bracket is not None:
            steps.append((None, int(bracket)))
        else:
            steps.append((key, int(key) if key.isdigit() else None))
    return tuple(steps)


def _enum(raw: dict[str, Any], where: str) -> frozenset[tuple[str, Any]] | None:
    if "enum" not in raw:
        return None
    values = raw["enum"]
    if not isinstance(values, list) or not values:
        raise PolicyError(f"{where}.enum: must be a non-empty array of JSON scalars")
    keys: set[tuple[str, Any]] = set()
    for i, value in enumerate(values):
        key = _scalar_key(value)
        if key is None or (isinstance(value, float) and not math.isfinite(value)):
            raise PolicyError(f"{where}.enum[{i}]: must be a string, number, boolean or null")
        keys.add(key)
    return frozenset(keys)


def _pattern(raw: dict[str, Any], where: str) -> Any:
    if "pattern" not in raw:
        return None
    text = raw["pattern"]
    if not isinstance(text, str):
        raise PolicyError(f"{where}.pattern: must be a string")
    try:
        return regex.compile(text)
    except regex.error as exc:
        raise PolicyError(f"{where}.pattern: invalid regular expression: {exc}") from None


def _max_length(raw: dict[str, Any], where: str) -> int | None:
    value = raw.get("max_length")
    if value is None and "max_length" not in raw:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PolicyError(f"{where}.max_length: must be an integer >= 0")
    return value


def _bounds(raw: dict[str, Any], where: str) -> tuple[float | None, float | None]:
    bounds: list[float | None] = []
    for name in ("min", "max"):
        if name not in raw:
            bounds.append(None)
            continue
        value = raw[name]
        if not _is_number(value) or not math.isfinite(value):
            raise PolicyError(f"{where}.{name}: must be a finite number")
        bounds.append(value)
    low, high = bounds
    if low is not None and high is not None and low > high:
        raise PolicyError(f"{where}: min {low} is greater than max {high}")
    return low, high
