"""The firewall policy engine: validation, matchers, combining, presets, the decision cache."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from relay.firewall import policy as policy_module
from relay.firewall.egress import normalise_host
from relay.firewall.policy import (
    MODES,
    Decision,
    Policy,
    PolicyError,
    applied,
    fail_closed_policy,
    load_policy,
    preset_info,
    preset_names,
    validate_document,
)
from relay.firewall.subjects import Host, Point, Subject


def doc(*rules: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"schema": 1, **top, "rules": list(rules)}


def make(*rules: dict[str, Any], **top: Any) -> Policy:
    return load_policy(doc(*rules, **top), id="p1", workspace_id="w1", name="t", mode="enforce")


def host(text: str) -> Host:
    parsed = normalise_host(text)
    assert parsed is not None, text
    return parsed


def egress(name: str, tool: str | None = "fetch", **kw: Any) -> Subject:
    return Subject("egress", tool=tool, host=host(name), **kw)


def call(tool: str, arguments: Any = None, point: Point = "response_call", **kw: Any) -> Subject:
    return Subject(point, tool=tool, arguments=arguments, **kw)


def bad_call(tool: str) -> Subject:
    return Subject("response_call", tool=tool, arguments_invalid=True)


def deny(**matchers: Any) -> dict[str, Any]:
    return {"id": "r", "effect": "deny", **matchers}


# -- validation ---------------------------------------------------------------------------

MALFORMED: list[tuple[Any, str]] = [
    ([], "policy: must be an object"),
    ({"rules": []}, "schema: required"),
    ({"schema": 2}, "schema: 2 is not supported"),
    ({"schema": True}, "schema: True is not supported"),
    ({"schema": 1, "mode": "x"}, "mode: unknown field"),
    (doc(default="block"), "default: 'block' must be one of allow, deny"),
    (doc(combining="last-match"), "combining: 'last-match'"),
    (doc(invalid_arguments="maybe"), "invalid_arguments: 'maybe'"),
    ({"schema": 1, "rules": {}}, "rules: must be an array"),
    ({"schema": 1, "rules": ["r"]}, "rules[0]: must be an object"),
    (doc({"effect": "deny"}), "rules[0].id: must be a non-empty string"),
    (doc({"id": "a b", "effect": "deny"}), "rules[0].id: must be a non-empty string"),
    (doc(deny(), deny()), "rules[1].id: duplicate rule id 'r'"),
    (doc({"id": "r", "effect": "block"}), "rules[0].effect: must be allow or deny"),
    (doc(deny(colour="red")), "rules[0]: unknown field 'colour'"),
    (doc(deny(description=3)), "rules[0].description: must be a string"),
    (doc(deny(tools=[])), "rules[0].tools: must be a non-empty array"),
    (doc(deny(tools=["ok", ""])), "rules[0].tools[1]: must be a non-empty string"),
    (doc(deny(mcp_urls="x")), "rules[0].mcp_urls: must be a non-empty array"),
    (
        doc(deny(hosts=["ok.com", "10.0.0.0/33"])),
        "rules[0].hosts[1]: '10.0.0.0/33' is not a hostname, IP address or CIDR",
    ),
    (doc(deny(except_hosts=["exa mple.com"])), "rules[0].except_hosts[0]: 'exa mple.com' is not"),
    (doc(deny(hosts=["foo*.com"])), "rules[0].hosts[0]: 'foo*.com' is not"),
    (doc(deny(hosts=["*.10.0.0.1"])), "rules[0].hosts[0]: '*.10.0.0.1': a '*.' wildcard"),
    (doc(deny(points=["egress", "nowhere"])), "rules[0].points[1]: 'nowhere' is not one of"),
    (
        doc(deny(tools=["x"], points=["egress"])),
        "rules[0].points[0]: this rule's matchers never apply at egress",
    ),
    (
        doc(deny(hosts=["*"], args=[{"path": "a", "max": 1}])),
        "rules[0]: hosts (egress) and args (calls) never hold together",
    ),
    (doc(deny(args=[])), "rules[0].args: must be a non-empty array"),
    (doc(deny(args=["a"])), "rules[0].args[0]: must be an object"),
    (doc(deny(args=[{"path": "a..b", "max": 1}])), "rules[0].args[0].path: must be a dot path"),
    (doc(deny(args=[{"path": "a"}])), "rules[0].args[0]: needs at least one of"),
    (doc(deny(args=[{"path": "a", "regex": "x"}])), "rules[0].args[0]: unknown field 'regex'"),
    (
        doc(deny(args=[{"path": "a", "pattern": "("}])),
        "rules[0].args[0].pattern: invalid regular expression",
    ),
    (doc(deny(args=[{"path": "a", "enum": [[1]]}])), "rules[0].args[0].enum[0]: must be a"),
    (doc(deny(args=[{"path": "a", "enum": []}])), "rules[0].args[0].enum: must be a non-empty"),
    (doc(deny(args=[{"path": "a", "max_length": -1}])), "rules[0].args[0].max_length: must be"),
    (doc(deny(args=[{"path": "a", "max_length": True}])), "rules[0].args[0].max_length: must"),
    (doc(deny(args=[{"path": "a", "min": "1"}])), "rules[0].args[0].min: must be a finite"),
    (doc(deny(args=[{"path": "a", "max": False}])), "rules[0].args[0].max: must be a finite"),
    (doc(deny(args=[{"path": "a", "min": 5, "max": 1}])), "rules[0].args[0]: min 5 is greater"),
    (doc(deny(args=[{"path": "a", "pattern": "x", "min": 1}])), "rules[0].args[0]: length/"),
    (doc(deny(invalid_arguments=False)), "rules[0].invalid_arguments: must be true"),
    (
        doc(deny(invalid_arguments=True, args=[{"path": "a", "max": 1}])),
        "rules[0]: args and invalid_arguments never hold together",
    ),
    (
        doc({"preset": "no_such"}),
        "rules[0].preset: unknown preset 'no_such' (known: no_private_egress, no_shell_tools",
    ),
    (doc({"preset": "tool_allowlist"}), "rules[0].tools: required by preset tool_allowlist"),
    (doc({"preset": "tool_allowlist", "tools": []}), "rules[0].tools: must be a non-empty"),
    (
        doc({"preset": "no_private_egress", "allow_hosts": ["::1/200"]}),
        "rules[0].allow_hosts[0]: '::1/200' is not",
    ),
    (
        doc({"preset": "no_shell_tools", "hosts": ["x"]}),
        "rules[0]: unknown field 'hosts' for preset no_shell_tools (params: except_tools)",
    ),
    (doc({"preset": "no_shell_tools", "id": ""}), "rules[0].id: must be a non-empty string"),
    (
        doc({"preset": "no_shell_tools"}, {"preset": "no_shell_tools"}),
        "rules[1].id: duplicate rule id 'no_shell_tools'",
    ),
]


@pytest.mark.parametrize(("raw", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_documents_are_rejected_naming_the_path(raw: Any, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        validate_document(raw)
    assert str(info.value).startswith(message), str(info.value)


def test_validate_fills_defaults_and_keeps_presets_as_references() -> None:
    raw = doc({"preset": "tool_allowlist", "tools": ["search"]})
    assert validate_document(raw) == {
        "schema": 1, "default": "allow", "combining": "first-match",
        "invalid_arguments": "deny", "rules": [{"preset": "tool_allowlist", "tools": ["search"]}],
    }  # fmt: skip
    assert validate_document({"schema": 1})["rules"] == []


def test_load_policy_checks_mode_and_keeps_the_document() -> None:
    with pytest.raises(PolicyError, match="mode: 'observe' is not shadow or enforce"):
        load_policy(doc(), id="p", workspace_id="w", name="n", mode="observe")
    raw = doc({"preset": "no_shell_tools", "id": "shells"})
    made = load_policy(raw, id="p", workspace_id="w", name="n", mode="shadow", source="preset")
    assert (made.mode, made.source, made.document["rules"]) == ("shadow", "preset", raw["rules"])
    assert [r.id for r in made.rules] == ["shells"]
    assert MODES == ("shadow", "enforce")


# -- matchers -----------------------------------------------------------------------------

MATCHING: list[tuple[dict[str, Any], Subject, str]] = [
    (deny(tools=["get_*"]), call("GET_Weather"), "deny"),
    (deny(tools=["get_*"]), call("set_weather"), "allow"),
    (deny(tools=["get_?"]), call("get_ab"), "allow"),
    (deny(tools=["[ab]x"]), call("bx"), "deny"),
    (deny(tools=["get_*"]), Subject("tool_definition", tool="get_x"), "deny"),
    (deny(tools=["*"]), Subject("mcp_server", tool="get_x", server_label="get_x"), "allow"),
    (deny(tools=["fetch"]), egress("evil.com"), "allow"),
    (deny(except_tools=["search", "get_*"]), call("delete"), "deny"),
    (deny(except_tools=["search", "get_*"]), call("Search"), "allow"),
    (deny(tools=["*"], except_tools=["search"]), call("search"), "allow"),
    (
        deny(mcp_servers=["git*"]),
        Subject("mcp_server", tool="GitHub", server_label="GitHub"),
        "deny",
    ),
    (deny(mcp_servers=["git*"]), Subject("mcp_server", tool="jira", server_label="jira"), "allow"),
    (deny(mcp_servers=["git*"]), call("x", server_label="github"), "allow"),
    (
        deny(mcp_servers=["git*"], tools=["*delete*"]),
        call("repo_delete", server_label="github"),
        "deny",
    ),
    (deny(mcp_servers=["git*"], tools=["*delete*"]), call("repo_delete"), "allow"),
    (
        deny(mcp_urls=["https://*.example.com/*"]),
        Subject("mcp_server", tool="x", server_url="HTTPS://mcp.Example.com/sse"),
        "deny",
    ),
    (
        deny(mcp_urls=["https://*.example.com/*"]),
        Subject("mcp_server", tool="x", server_url="https://mcp.other.com/sse"),
        "allow",
    ),
    (deny(hosts=["*"], tools=["fetch"]), egress("a.com"), "deny"),
    (deny(hosts=["*"], tools=["fetch"]), egress("a.com", tool="browse"), "allow"),
    (deny(hosts=["*"], mcp_servers=["git*"]), egress("a.com", server_label="github"), "deny"),
    (deny(hosts=["*"]), call("fetch"), "allow"),
    (deny(points=["history_call"]), call("x", point="history_call"), "deny"),
    (deny(points=["history_call"]), call("x"), "allow"),
    (deny(), egress("a.com"), "deny"),
    (deny(), Subject("mcp_server", tool="m", server_label="m"), "deny"),
]


@pytest.mark.parametrize(("rule", "subject", "verdict"), MATCHING)
def test_each_matcher(rule: dict[str, Any], subject: Subject, verdict: str) -> None:
    decision = make(rule).decide(subject)
    assert decision == Decision(verdict, "r" if verdict == "deny" else None)  # type: ignore[arg-type]


HOSTS: list[tuple[str, str, bool]] = [
    ("example.com", "EXAMPLE.com.", True),
    ("example.com", "www.example.com", False),
    ("*.example.com", "a.b.example.com", True),
    ("*.example.com", "example.com", False),
    ("*.example.com", "badexample.com", False),
    ("127.0.0.1", "2130706433", True),
    ("127.0.0.1", "::ffff:127.0.0.1", True),
    ("10.0.0.0/8", "10.200.3.4", True),
    ("10.0.0.0/8", "11.0.0.1", False),
    ("10.1.2.3/8", "10.9.9.9", True),  # host bits ignored
    ("fd00::/8", "fd12::1", True),
    ("fd00::/8", "fe80::1", False),
    ("::ffff:10.0.0.0/104", "10.1.1.1", True),  # a mapped CIDR matches the IPv4 host
    ("10.0.0.0/8", "fd00::1", False),
    ("localhost", "127.0.0.1", False),  # a name pattern never matches an IP host
    ("*", "1.2.3.4", True),
    ("*", "anything.example", True),
]


@pytest.mark.parametrize(("pattern", "name", "hit"), HOSTS)
def test_host_patterns(pattern: str, name: str, hit: bool) -> None:
    policy = make(deny(hosts=[pattern]))
    assert policy.decide(egress(name)).verdict == ("deny" if hit else "allow")
    excepted = make(deny(hosts=["*"], except_hosts=[pattern]))
    assert excepted.decide(egress(name)).verdict == ("allow" if hit else "deny")


ARGS: list[tuple[dict[str, Any], Any, bool]] = [
    ({"path": "mode", "enum": ["r", 1, None]}, {"mode": "r"}, True),
    ({"path": "mode", "enum": ["r", 1, None]}, {"mode": 1.0}, True),
    ({"path": "mode", "enum": ["r", 1, None]}, {"mode": True}, False),  # true is not 1
    ({"path": "mode", "enum": [True]}, {"mode": 1}, False),
    ({"path": "mode", "enum": ["r", 1, None]}, {"mode": None}, True),
    ({"path": "mode", "enum": ["r"]}, {"mode": ["r"]}, False),
    ({"path": "mode", "enum": ["r"]}, {}, False),  # missing path
    ({"path": "url", "pattern": "https://[a-z.]+/.*"}, {"url": "https://a.com/x"}, True),
    ({"path": "url", "pattern": "https://[a-z.]+"}, {"url": "https://a.com/x"}, False),
    ({"path": "url", "pattern": ".*"}, {"url": 5}, False),
    ({"path": "q", "max_length": 3}, {"q": "abc"}, True),
    ({"path": "q", "max_length": 3}, {"q": "abcd"}, False),
    ({"path": "q", "max_length": 1}, {"q": [1]}, True),
    ({"path": "q", "max_length": 1}, {"q": {"a": 1}}, False),
    ({"path": "n", "min": 1, "max": 10}, {"n": 10}, True),
    ({"path": "n", "min": 1, "max": 10}, {"n": 10.5}, False),
    ({"path": "n", "min": 1}, {"n": 0}, False),
    ({"path": "n", "min": 0}, {"n": True}, False),  # bool is not a number
    ({"path": "n", "max": 5}, {"n": "3"}, False),
    ({"path": "a.b[1].c", "enum": ["x"]}, {"a": {"b": [{}, {"c": "x"}]}}, True),
    ({"path": "a.b.1.c", "enum": ["x"]}, {"a": {"b": [{}, {"c": "x"}]}}, True),
    ({"path": "a.b.1", "enum": ["x"]}, {"a": {"b": {"1": "x"}}}, True),
    ({"path": "a.b[1]", "enum": ["x"]}, {"a": {"b": {"1": "x"}}}, False),
    ({"path": "a.b[5]", "enum": ["x"]}, {"a": {"b": ["x"]}}, False),
    ({"path": "[0]", "enum": ["x"]}, ["x"], True),
    ({"path": "a.b", "enum": ["x"]}, "not an object", False),
    ({"path": "a", "enum": ["x"]}, None, False),
]


@pytest.mark.parametrize(("constraint", "arguments", "hit"), ARGS)
def test_args_constraints(constraint: dict[str, Any], arguments: Any, hit: bool) -> None:
    policy = make(deny(tools=["t"], args=[constraint]))
    assert policy.decide(call("t", arguments)).verdict == ("deny" if hit else "allow")


def test_every_args_constraint_must_hold() -> None:
    policy = make(deny(args=[{"path": "a", "max": 1}, {"path": "b", "enum": ["x"]}]))
    assert policy.decide(call("t", {"a": 0, "b": "x"})).verdict == "deny"
    assert policy.decide(call("t", {"a": 0, "b": "y"})).verdict == "allow"
    assert policy.decide(call("t", {"a": 0, "b": "x"}, point="tool_definition")).rule_id is None


# -- combining, defaults, invalid arguments ------------------------------------------------

ORDERED = (
    {"id": "ok-search", "effect": "allow", "tools": ["search"]},
    {"id": "no-s", "effect": "deny", "tools": ["s*"]},
    {"id": "no-internal", "effect": "deny", "hosts": ["*.internal"]},
    {"id": "ok-egress", "effect": "allow", "hosts": ["*"]},
)
COMBINED: list[tuple[Subject, Decision, Decision]] = [
    (call("search"), Decision("allow", "ok-search"), Decision("deny", "no-s")),
    (call("send"), Decision("deny", "no-s"), Decision("deny", "no-s")),
    (egress("db.internal"), Decision("deny", "no-internal"), Decision("deny", "no-internal")),
    (egress("a.com"), Decision("allow", "ok-egress"), Decision("allow", "ok-egress")),
    (call("other"), Decision("deny", None), Decision("deny", None)),
]


@pytest.mark.parametrize(("subject", "first", "overrides"), COMBINED)
def test_first_match_and_deny_overrides(subject: Subject, first: Decision, overrides: Decision
                                        ) -> None:  # fmt: skip
    assert make(*ORDERED, default="deny").decide(subject) == first
    assert make(*ORDERED, default="deny", combining="deny-overrides").decide(subject) == overrides


def test_deny_overrides_takes_the_first_allow_when_nothing_denies() -> None:
    rules = ({"id": "a1", "effect": "allow", "tools": ["x*"]},
             {"id": "a2", "effect": "allow", "tools": ["*"]})  # fmt: skip
    assert make(*rules, combining="deny-overrides").decide(call("xy")) == Decision("allow", "a1")


@pytest.mark.parametrize("default", ["allow", "deny"])
def test_default_effect_when_no_rule_matches(default: str) -> None:
    policy = make(deny(tools=["nope"]), default=default)
    assert policy.decide(call("x")) == Decision(default, None)  # type: ignore[arg-type]
    assert policy.decide(egress("a.com")) == Decision(default, None)  # type: ignore[arg-type]


INVALID: list[tuple[dict[str, Any], tuple[dict[str, Any], ...], Decision]] = [
    ({}, (), Decision("deny", "invalid_arguments")),
    ({"invalid_arguments": "allow"}, (), Decision("allow", "invalid_arguments")),
    ({"default": "deny", "invalid_arguments": "allow"}, (), Decision("allow", "invalid_arguments")),
    # A rule with the invalid_arguments matcher overrides the policy's effect...
    (
        {},
        ({"id": "lenient", "effect": "allow", "tools": ["t"], "invalid_arguments": True},),
        Decision("allow", "lenient"),
    ),
    (
        {"invalid_arguments": "allow"},
        ({"id": "strict", "effect": "deny", "invalid_arguments": True},),
        Decision("deny", "strict"),
    ),
    # ...a plain allow rule does not vouch for arguments it could not read...
    ({}, ({"id": "ok", "effect": "allow", "tools": ["t"]},), Decision("deny", "invalid_arguments")),
    # ...a plain deny rule still applies, an args rule never matches.
    ({"invalid_arguments": "allow"}, (deny(tools=["t"]),), Decision("deny", "r")),
    ({}, (deny(args=[{"path": "a", "max": 1}]),), Decision("deny", "invalid_arguments")),
]


@pytest.mark.parametrize(("top", "rules", "expected"), INVALID)
def test_invalid_arguments(top: dict[str, Any], rules: tuple[dict[str, Any], ...],
                           expected: Decision) -> None:  # fmt: skip
    policy = make(*rules, **top)
    assert policy.decide(bad_call("t")) == expected
    assert policy.decide(call("t", {"a": 1})).rule_id != "invalid_arguments"


def test_invalid_arguments_rule_ignores_valid_calls() -> None:
    policy = make(deny(invalid_arguments=True), default="allow")
    assert policy.decide(call("t", {})) == Decision("allow", None)


def test_a_timed_out_pattern_fails_closed_for_deny_rules(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:  # fmt: skip
    monkeypatch.setattr("relay.firewall.matchers.PATTERN_TIMEOUT", 1e-9)
    slow = [{"path": "q", "pattern": "(a+)+b"}]
    subject = call("t", {"q": "a" * 5000})
    assert make(deny(args=slow)).decide(subject) == Decision("deny", "r")
    allowing = make({"id": "ok", "effect": "allow", "args": slow}, default="deny")
    assert allowing.decide(subject) == Decision("deny", None)


# -- presets ------------------------------------------------------------------------------

PRIVATE = ["127.0.0.1", "169.254.169.254", "metadata.google.internal", "10.1.2.3", "::1",
           "0x7f.1", "017700000001", "::ffff:169.254.169.254", "100.100.100.200",
           "192.0.0.192", "fd00:ec2::254", "fe80::1", "172.31.0.1", "192.168.1.1", "0.0.0.0",
           "::", "localhost", "a.localhost", "metadata", "Instance-Data", "printer.local",
           "64:ff9b::a9fe:a9fe", "100.64.0.1"]  # fmt: skip
PUBLIC = ["example.com", "8.8.8.8", "2606:4700::1111", "internal.example.com", "172.32.0.1",
          "64:ff9b::808:808", "metadata.example.com"]  # fmt: skip


@pytest.mark.parametrize("name", PRIVATE)
def test_no_private_egress_denies(name: str) -> None:
    policy = make({"preset": "no_private_egress"})
    assert policy.decide(egress(name)) == Decision("deny", "no_private_egress")


@pytest.mark.parametrize("name", PUBLIC)
def test_no_private_egress_allows(name: str) -> None:
    assert make({"preset": "no_private_egress"}).decide(egress(name)).verdict == "allow"


def test_no_private_egress_allow_hosts_and_custom_id() -> None:
    policy = make({"preset": "no_private_egress", "id": "lan", "allow_hosts": ["10.20.0.0/16"]})
    assert policy.decide(egress("10.20.3.4")) == Decision("allow", None)
    assert policy.decide(egress("10.21.3.4")) == Decision("deny", "lan")
    assert policy.rules[0].except_hosts is not None


def test_tool_allowlist_under_both_combining_modes() -> None:
    for combining in ("first-match", "deny-overrides"):
        policy = make(
            {"preset": "tool_allowlist", "tools": ["search", "get_*"]},
            {"id": "all", "effect": "allow", "tools": ["*"]},
            combining=combining,
        )
        assert policy.decide(call("get_x")) == Decision("allow", "all")
        assert policy.decide(call("rm")) == Decision("deny", "tool_allowlist")
        assert policy.decide(Subject("tool_definition", tool="rm")).verdict == "deny"
        assert policy.rules[0].points == {"tool_definition", "history_call", "response_call"}


@pytest.mark.parametrize("name", ["bash", "run_shell", "PowerShell", "sh", "zsh", "exec",
                                  "exec_python", "code_exec", "run_command", "my_run_cmd_v2",
                                  "execute_command", "terminal", "open_terminal", "subprocess_run",
                                  "cmd", "cmd.exe", "system_command"])  # fmt: skip
def test_no_shell_tools_denies(name: str) -> None:
    policy = make({"preset": "no_shell_tools"})
    assert policy.decide(call(name)) == Decision("deny", "no_shell_tools")


@pytest.mark.parametrize("name", ["search", "get_weather", "share_doc", "executor_status",
                                  "shuffle", "commander"])  # fmt: skip
def test_no_shell_tools_allows(name: str) -> None:
    assert make({"preset": "no_shell_tools"}).decide(call(name)).verdict == "allow"


EXAMPLES = [
    pytest.param(name, example, id=f"{name}-{i}")
    for name, preset in policy_module._presets().items()
    for i, example in enumerate(preset.examples)
]


@pytest.mark.parametrize(("name", "example"), EXAMPLES)
def test_shipped_preset_examples(name: str, example: dict[str, Any]) -> None:
    fields = dict(example["subject"])
    if "host" in fields:
        fields["host"] = host(fields["host"])
    policy = make({"preset": name, **example.get("params", {})})
    assert policy.decide(Subject(**fields)).verdict == example["verdict"]


def test_preset_names_and_info() -> None:
    assert preset_names() == ["no_private_egress", "no_shell_tools", "tool_allowlist"]
    info = {p["name"]: p for p in preset_info()}
    assert info["tool_allowlist"]["params"]["tools"]["required"] is True
    assert info["no_private_egress"]["params"]["allow_hosts"]["kind"] == "hosts"
    assert all(p["description"] for p in info.values())


# -- cache, fail closed, applied ----------------------------------------------------------


@pytest.mark.parametrize("cache_size", [4096, 2])
def test_the_cache_never_changes_answers(monkeypatch: pytest.MonkeyPatch, cache_size: int
                                         ) -> None:  # fmt: skip
    monkeypatch.setattr(policy_module, "CACHE_SIZE", cache_size)
    policy = make(
        {"id": "small", "effect": "allow", "tools": ["t"], "args": [{"path": "n", "max": 5}]},
        deny(tools=["t"]), {"id": "d", "effect": "deny", "hosts": ["*.bad"]},
    )  # fmt: skip
    cases = [(call("t", {"n": 1}), "small"), (call("t", {"n": 9}), "r"),
             (bad_call("t"), "r"), (egress("x.bad"), "d"), (egress("x.good"), None),
             (call("u", {"n": 1}), None), (bad_call("u"), "invalid_arguments")]  # fmt: skip
    for _ in range(3):
        for subject, rule_id in cases:
            assert policy.decide(subject).rule_id == rule_id
    assert len(policy._cache) <= cache_size


def test_fail_closed_policy_denies_everything() -> None:
    policy = fail_closed_policy("p", "w", "broken", "user")
    assert policy.mode == "enforce"
    for subject in (
        call("x", {}),
        bad_call("x"),
        egress("a.com"),
        Subject("tool_definition", tool="x"),
        Subject("mcp_server", tool="m"),
    ):
        assert policy.decide(subject) == Decision("deny", "fail-closed")


@pytest.mark.parametrize(("verdict", "mode", "expected"), [
    ("allow", "shadow", ("allowed", False)),
    ("deny", "shadow", ("allowed", True)),
    ("allow", "enforce", ("allowed", False)),
    ("deny", "enforce", ("denied", False)),
])  # fmt: skip
def test_applied(verdict: Any, mode: Any, expected: tuple[str, bool]) -> None:
    assert applied(verdict, mode) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "other"\n[[rules]]\neffect = "deny"\n', "needs name = 'p'"),
        ('name = "p"\ncolour = 1\n[[rules]]\neffect = "deny"\n', "needs name = 'p'"),
        ('name = "p"\n', "rules: one or more"),
        ('name = "p"\n[params.x]\nkind = "ints"\n[[rules]]\neffect = "deny"\n', "params.x"),
        ('name = "p"\n[[rules]]\neffect = "deny"\nhosts = ["a b"]\n', "rules[0].hosts[0]"),
        ("name = \n", "invalid TOML"),
    ],
)
def test_malformed_preset_files(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "p.toml").write_text(text)
    with pytest.raises(PolicyError, match=re.escape(message)):
        policy_module.load_presets(tmp_path)
