"""Take a request or an answer apart into the subjects the firewall decides on.

Inspection points (subjects.Point): tools offered in the request (`tools`, legacy
`functions`, OpenAI's `mcp` tool type with its `server_label`, `server_url` and
`allowed_tools`), tool calls in the conversation history (chat `tool_calls` and legacy
`function_call`; Responses `function_call` / `mcp_call` input items), tool calls in the
answer, and every host that a call's arguments or an MCP server URL would reach.

Streamed tool calls arrive as deltas keyed by (choice, call index); `StreamedCalls`
assembles them so that the filter decides on whole calls only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from relay.firewall.egress import extract_hosts, hosts_in_url
from relay.firewall.subjects import Point, Subject

_CALL_ITEM_TYPES = frozenset({"function_call", "mcp_call", "custom_tool_call"})


def request_subjects(body: dict[str, Any]) -> list[Subject]:
    subjects: list[Subject] = []
    for i, tool in enumerate(_list(body.get("tools"))):
        if isinstance(tool, dict):
            subjects.extend(_offered(tool, f"tools[{i}]"))
    for i, function in enumerate(_list(body.get("functions"))):
        if isinstance(function, dict):
            subjects.append(Subject("tool_definition", tool=_name(function.get("name")),
                                    path=f"functions[{i}]"))
    for i, message in enumerate(_list(body.get("messages"))):
        if isinstance(message, dict):
            subjects.extend(_message_calls(message, "history_call", f"messages[{i}]"))
    for i, item in enumerate(_list(body.get("input"))):
        if isinstance(item, dict) and item.get("type") in _CALL_ITEM_TYPES:
            subjects.extend(_item_call(item, "history_call", f"input[{i}]"))
    return subjects


def response_subjects(response: Any) -> list[Subject]:
    if not isinstance(response, dict):
        return []
    subjects: list[Subject] = []
    for i, choice in enumerate(_list(response.get("choices"))):
        if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
            subjects.extend(_message_calls(choice["message"], "response_call",
                                           f"choices[{i}].message"))
    for i, item in enumerate(_list(response.get("output"))):
        if isinstance(item, dict) and item.get("type") in _CALL_ITEM_TYPES:
            subjects.extend(_item_call(item, "response_call", f"output[{i}]"))
    return subjects


def call_subjects(
    point: Point, name: str, raw_arguments: Any, path: str, server_label: str | None = None
) -> list[Subject]:
    """The call itself, then one egress subject per host its arguments would reach."""
    arguments, invalid = parse_arguments(raw_arguments)
    subjects = [Subject(point, tool=name, server_label=server_label, arguments=arguments,
                        arguments_invalid=invalid, path=path)]
    # Arguments that are not JSON are still searched for hosts, as text.
    for host in extract_hosts(raw_arguments if invalid else arguments):
        subjects.append(Subject("egress", tool=name, server_label=server_label, host=host,
                                source=point, path=path))
    return subjects


def parse_arguments(raw: Any) -> tuple[Any, bool]:
    """(arguments, invalid): a JSON text is parsed; an object is taken as it is; an empty
    string is no arguments; anything else is invalid."""
    if isinstance(raw, dict):
        return raw, False
    if isinstance(raw, str):
        if not raw.strip():
            return {}, False
        try:
            return orjson.loads(raw), False
        except orjson.JSONDecodeError:
            return None, True
    if raw is None:
        return {}, False
    return None, True


def _offered(tool: dict[str, Any], path: str) -> Iterator[Subject]:
    if tool.get("type") == "mcp":
        label = _name(tool.get("server_label"))
        url = tool.get("server_url") if isinstance(tool.get("server_url"), str) else None
        yield Subject("mcp_server", tool=label, server_label=label, server_url=url, path=path)
        for host in hosts_in_url(url) if url else ():
            yield Subject("egress", tool=label, server_label=label, server_url=url, host=host,
                          source="mcp_server", path=path)
        allowed = tool.get("allowed_tools")
        names = allowed.get("tool_names") if isinstance(allowed, dict) else allowed
        for name in _list(names):
            yield Subject("tool_definition", tool=_name(name), server_label=label,
                          path=f"{path}.allowed_tools")
        return
    function = tool.get("function")
    holder = function if isinstance(function, dict) else tool
    name = holder.get("name")
    yield Subject("tool_definition", tool=_name(name if name is not None else tool.get("type")),
                  path=path)


def _message_calls(message: dict[str, Any], point: Point, path: str) -> Iterator[Subject]:
    for j, call in enumerate(_list(message.get("tool_calls"))):
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            yield from call_subjects(point, _name(function.get("name")),
                                     function.get("arguments"), f"{path}.tool_calls[{j}]")
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        yield from call_subjects(point, _name(legacy.get("name")), legacy.get("arguments"),
                                 f"{path}.function_call")


def _item_call(item: dict[str, Any], point: Point, path: str) -> list[Subject]:
    label = item.get("server_label")
    raw = item.get("arguments", item.get("input"))
    return call_subjects(point, _name(item.get("name")), raw, path,
                         label if isinstance(label, str) else None)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _name(value: Any) -> str:
    return value if isinstance(value, str) else ""


# ---- streams -------------------------------------------------------------------------


@dataclass(slots=True)
class StreamedCall:
    choice: int
    index: int  # the call's index within its choice; -1 for a legacy function_call
    id: str | None = None
    type: str | None = None
    name: str = ""
    arguments: str = ""

    @property
    def path(self) -> str:
        if self.index < 0:
            return f"choices[{self.choice}].delta.function_call"
        return f"choices[{self.choice}].delta.tool_calls[{self.index}]"

    def subjects(self) -> list[Subject]:
        return call_subjects("response_call", self.name, self.arguments, self.path)

    def delta(self) -> dict[str, Any]:
        """The whole call as one delta, in the shape it arrived in."""
        function = {"name": self.name, "arguments": self.arguments}
        if self.index < 0:
            return {"function_call": function}
        call: dict[str, Any] = {"index": self.index, "type": self.type or "function",
                                "function": function}
        if self.id is not None:
            call["id"] = self.id
        return {"tool_calls": [call]}


class StreamedCalls:
    """Tool-call deltas of a streamed answer, assembled per (choice, call index)."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[tuple[int, int], StreamedCall] = {}

    def feed(self, choice: int, delta: dict[str, Any]) -> bool:
        """Take the delta's tool-call pieces; True when it had any."""
        found = False
        for piece in _list(delta.get("tool_calls")):
            if isinstance(piece, dict):
                index = piece.get("index", 0)
                self._add(choice, index if isinstance(index, int) else 0, piece,
                          piece.get("function"))
                found = True
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):
            self._add(choice, -1, {}, legacy)
            found = True
        return found

    def _add(self, choice: int, index: int, piece: dict[str, Any], function: Any) -> None:
        call = self._calls.get((choice, index))
        if call is None:
            call = self._calls[(choice, index)] = StreamedCall(choice, index)
        if isinstance(piece.get("id"), str):
            call.id = piece["id"]
        if isinstance(piece.get("type"), str):
            call.type = piece["type"]
        if isinstance(function, dict):
            if isinstance(function.get("name"), str):
                call.name += function["name"]
            if isinstance(function.get("arguments"), str):
                call.arguments += function["arguments"]

    def take(self, choice: int | None = None) -> list[StreamedCall]:
        """Remove and return the calls of one choice (None: of every choice), in order."""
        keys = sorted(k for k in self._calls if choice is None or k[0] == choice)
        return [self._calls.pop(k) for k in keys]
