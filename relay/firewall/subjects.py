"""What the firewall decides about: one inspected thing per `Subject`.

The request and the response are taken apart (firewall/inspect.py) into subjects — a
tool offered, an MCP server offered, a tool call in the history or in the answer, and
every host a call's arguments or an MCP server URL would send data to — and the policy
(firewall/policy.py) decides each one on its own. Hosts arrive here already normalised
(firewall/egress.py), so a policy compares canonical forms only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Where a subject was found; the evidence event's `point`.
Point = Literal["tool_definition", "mcp_server", "history_call", "response_call", "egress"]
POINTS: tuple[Point, ...] = (
    "tool_definition", "mcp_server", "history_call", "response_call", "egress",
)
CALL_POINTS: frozenset[Point] = frozenset({"history_call", "response_call"})


@dataclass(frozen=True, slots=True)
class Host:
    """A destination in canonical form.

    `name` is what policies and evidence compare and show: a hostname as lowercase
    A-labels (IDNA/punycode) without a trailing dot, or an IP address's compressed text.
    `ip` is set when the host is an IP address (an IPv4-mapped IPv6 address is given as
    the IPv4 address it maps), so CIDR rules match every spelling of one address.
    """

    name: str
    ip: IPAddress | None = None


@dataclass(frozen=True, slots=True)
class Subject:
    point: Point
    tool: str | None = None  # the tool's (function's) name; for an MCP server, its label
    server_label: str | None = None  # MCP: the server's label (also set on its tools)
    server_url: str | None = None  # MCP: the server URL as offered
    host: Host | None = None  # egress subjects only
    arguments: Any = None  # calls: the parsed JSON arguments
    arguments_invalid: bool = False  # calls: the arguments were not valid JSON
    source: Point | None = None  # egress: the point of the call or server it came from
    path: str = ""  # where in the body, e.g. "messages[2].tool_calls[0]"
