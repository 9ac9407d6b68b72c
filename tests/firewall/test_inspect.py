"""Taking requests and answers apart into firewall subjects (no relay needed)."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import pytest

from relay.firewall.inspect import (
    StreamedCalls,
    parse_arguments,
    request_subjects,
    response_subjects,
)
from relay.firewall.subjects import Host, Subject


def _brief(subjects: list[Subject]) -> list[tuple[str, str | None, str | None, str]]:
    return [(s.point, s.tool, s.host.name if s.host else None, s.path) for s in subjects]


@pytest.mark.parametrize(("raw", "expected"), [
    ('{"a": 1}', ({"a": 1}, False)),
    ({"a": 1}, ({"a": 1}, False)),
    ("", ({}, False)),
    ("  ", ({}, False)),
    (None, ({}, False)),
    ('{"a": ', (None, True)),
    ("[1, 2]", ([1, 2], False)),
    (42, (None, True)),
    (["a"], (None, True)),
])
def test_arguments_are_parsed_or_marked_invalid(raw: Any, expected: tuple[Any, bool]) -> None:
    assert parse_arguments(raw) == expected


def test_chat_request_subjects_in_order() -> None:
    body = {
        "tools": [
            {"type": "function", "function": {"name": "search"}},
            {"type": "mcp", "server_label": "gh", "server_url": "https://mcp.GitHub.com./x",
             "allowed_tools": {"tool_names": ["list_issues"]}},
            {"type": "web_search_preview"},
            "not a tool",
        ],
        "functions": [{"name": "legacy_fn"}],
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [
                {"id": "c", "type": "function",
                 "function": {"name": "fetch", "arguments": '{"u": "http://a.example/"}'}}],
             "function_call": {"name": "old", "arguments": "not json"}},
        ],
    }
    assert _brief(request_subjects(body)) == [
        ("tool_definition", "search", None, "tools[0]"),
        ("mcp_server", "gh", None, "tools[1]"),
        ("egress", "gh", "mcp.github.com", "tools[1]"),
        ("tool_definition", "list_issues", None, "tools[1].allowed_tools"),
        ("tool_definition", "web_search_preview", None, "tools[2]"),
        ("tool_definition", "legacy_fn", None, "functions[0]"),
        ("history_call", "fetch", None, "messages[1].tool_calls[0]"),
        ("egress", "fetch", "a.example", "messages[1].tool_calls[0]"),
        ("history_call", "old", None, "messages[1].function_call"),
    ]
    subjects = request_subjects(body)
    assert subjects[1].server_url == "https://mcp.GitHub.com./x"
    assert subjects[3].server_label == "gh"
    assert subjects[-1].arguments_invalid and subjects[-1].arguments is None
    assert subjects[7].source == "history_call"


def test_responses_api_items_and_answers() -> None:
    body = {"input": [
        {"type": "message", "role": "user", "content": "x"},
        {"type": "function_call", "name": "fetch", "arguments": '{"url": "https://b.example"}',
         "call_id": "c1"},
        {"type": "mcp_call", "server_label": "gh", "name": "create_issue", "arguments": "{}"},
    ], "tools": [{"type": "function", "name": "fetch"}]}
    assert _brief(request_subjects(body)) == [
        ("tool_definition", "fetch", None, "tools[0]"),
        ("history_call", "fetch", None, "input[1]"),
        ("egress", "fetch", "b.example", "input[1]"),
        ("history_call", "create_issue", None, "input[2]"),
    ]
    assert request_subjects(body)[-1].server_label == "gh"
    answer = {"output": [{"type": "function_call", "name": "fetch",
                          "arguments": '{"url": "http://0x7f000001/"}'}]}
    subjects = response_subjects(answer)
    assert _brief(subjects) == [("response_call", "fetch", None, "output[0]"),
                                ("egress", "fetch", "127.0.0.1", "output[0]")]
    assert subjects[1].host == Host("127.0.0.1", IPv4Address("127.0.0.1"))


def test_chat_answers_and_malformed_shapes() -> None:
    answer = {"choices": [
        {"index": 0, "message": {"role": "assistant", "tool_calls": [
            {"function": {"name": "a", "arguments": "{}"}}, "junk", {"function": "junk"}]}},
        {"index": 1, "message": "junk"},
        "junk",
    ]}
    assert _brief(response_subjects(answer)) == [
        ("response_call", "a", None, "choices[0].message.tool_calls[0]")]
    assert response_subjects("not an object") == []
    assert response_subjects({"choices": "nope", "output": 3}) == []
    assert request_subjects({"tools": {"x": 1}, "messages": "nope"}) == []


def test_streamed_calls_assemble_per_choice_and_index() -> None:
    calls = StreamedCalls()
    assert not calls.feed(0, {"content": "hi"})
    assert calls.feed(0, {"tool_calls": [{"index": 0, "id": "c0", "type": "function",
                                          "function": {"name": "fe", "arguments": ""}}]})
    calls.feed(0, {"tool_calls": [{"index": 0, "function": {"name": "tch", "arguments": '{"u'}},
                                  {"index": 1, "id": "c1", "function": {"name": "b"}}]})
    calls.feed(1, {"function_call": {"name": "legacy", "arguments": "{}"}})
    calls.feed(0, {"tool_calls": [{"index": 0, "function": {"arguments": '": 1}'}}]})
    first = calls.take(0)
    assert [(c.index, c.id, c.name, c.arguments) for c in first] == [
        (0, "c0", "fetch", '{"u": 1}'), (1, "c1", "b", "")]
    assert first[0].delta() == {"tool_calls": [{"index": 0, "id": "c0", "type": "function",
                                                "function": {"name": "fetch",
                                                             "arguments": '{"u": 1}'}}]}
    assert calls.take(0) == []
    (legacy,) = calls.take()
    assert legacy.delta() == {"function_call": {"name": "legacy", "arguments": "{}"}}
    assert legacy.path == "choices[1].delta.function_call"
    assert _brief(legacy.subjects()) == [
        ("response_call", "legacy", None, "choices[1].delta.function_call")]
