"""The firewall through the relay on loopback: deny, shadow, streams, evidence, no leaks."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from tests.conftest import Relay, RelayFactory, Upstream

AWS_KEY = "AKIAZ7Q3KXW2M4H5PLTB"
POLICY: dict[str, Any] = {
    "schema": 1,
    "default": "allow",
    "rules": [
        {"id": "no-shell", "effect": "deny", "tools": ["shell*", "run_command"]},
        {"preset": "no_private_egress"},
        {"id": "small-transfers", "effect": "deny", "tools": ["transfer"],
         "args": [{"path": "amount", "min": 1000}]},
    ],
}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
    for name in ("search", "fetch", "transfer")]


async def _policy(relay: Relay, mode: str, document: dict[str, Any] = POLICY) -> str:
    return await relay.add_firewall_policy(mode, document)


def _client(relay: Relay) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=relay.base_url, api_key=relay.key, max_retries=0)


async def _events(relay: Relay) -> list[dict[str, Any]]:
    return await relay.services.store.list_events(relay.boot.workspace.id, "firewall",
                                                  limit=1000)


def _calls(*calls: tuple[str, Any]) -> dict[str, str]:
    return {"x-mock-tool-calls": orjson.dumps([
        {"name": name, "arguments": args if isinstance(args, str) else
         orjson.dumps(args).decode()} for name, args in calls]).decode()}


async def test_enforce_denies_an_offered_tool_before_the_upstream_and_metering(
    relay: Relay, upstream: Upstream
) -> None:
    policy_id = await _policy(relay, "enforce")
    tools: list[Any] = [*TOOLS, {"type": "function", "function": {"name": "shell_exec"}}]
    async with _client(relay) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], tools=tools)
    assert caught.value.code == "firewall_blocked"
    assert upstream.mock.seen == []
    assert relay.services.metrics.tokens.get("metered") == 0
    denied, by_default = await _events(relay)
    assert (denied["point"], denied["tool"], denied["verdict"], denied["outcome"]) == (
        "tool_definition", "shell_exec", "deny", "denied")
    # the tools the policy's default allowed: one event lists them all
    assert (by_default["verdict"], by_default["rule_id"], by_default["count"]) == (
        "allow", None, 3)
    assert [(d["point"], d["tool"], d["path"]) for d in by_default["decisions"]] == [
        ("tool_definition", "search", "tools[0]"), ("tool_definition", "fetch", "tools[1]"),
        ("tool_definition", "transfer", "tools[2]")]
    assert denied["policy_id"] == policy_id and denied["rule_id"] == "no-shell"
    assert denied["mode"] == "enforce" and denied["would_have"] is False
    assert denied["request_id"] == caught.value.response.headers["x-request-id"]


async def test_shadow_lets_the_same_traffic_through_and_records_would_have(
    relay: Relay, upstream: Upstream
) -> None:
    await _policy(relay, "shadow")
    tools: list[Any] = [*TOOLS, {"type": "function", "function": {"name": "shell_exec"}}]
    async with _client(relay) as client:
        done = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], tools=tools,
            extra_headers=_calls(("fetch", {"url": "http://169.254.169.254/latest/"})))
    assert done.choices[0].message.tool_calls is not None
    assert upstream.mock.seen[-1].body["tools"] == tools
    events = await _events(relay)
    would = [(e["point"], e["tool"], e["host"], e["rule_id"]) for e in events
             if e["would_have"]]
    assert would == [("tool_definition", "shell_exec", None, "no-shell"),
                     ("egress", "fetch", "169.254.169.254", "no_private_egress")]
    assert {(e["outcome"], e["mode"]) for e in events} == {("allowed", "shadow")}
    metrics = relay.services.metrics.exposition().decode()
    assert ('orca_relay_firewall_decisions_total{mode="shadow",outcome="allowed",'
            'verdict="deny"} 2.0') in metrics


@pytest.mark.parametrize("url", [
    "http://2130706433/", "http://0x7f.1/x", "http://[::ffff:127.0.0.1]:8080/",
    "HTTP://LOCALHOST./", "http://user:pw@10.0.0.7/", "http://%31%30.0.0.1/",
])
async def test_a_history_call_to_a_private_host_is_denied_in_every_spelling(
    relay: Relay, upstream: Upstream, url: str
) -> None:
    await _policy(relay, "enforce")
    messages: list[Any] = [
        {"role": "user", "content": "get it"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "fetch", "arguments": orjson.dumps({"url": url}).decode()}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    async with _client(relay) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="m", messages=messages)
    assert caught.value.code == "firewall_blocked"
    assert upstream.mock.seen == []
    denied = [e for e in await _events(relay) if e["verdict"] == "deny"]
    assert [(e["point"], e["location"]["source"]) for e in denied] == [
        ("egress", "history_call")]


async def test_a_denied_call_in_the_answer_is_replaced_and_refunded(
    relay: Relay, upstream: Upstream
) -> None:
    await _policy(relay, "enforce")
    async with _client(relay) as client:
        allowed = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "pay"}],
            extra_headers=_calls(("transfer", {"amount": 10})))
        assert allowed.choices[0].message.tool_calls is not None
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "pay"}],
                extra_headers=_calls(("transfer", {"amount": 5000})))
    assert caught.value.code == "firewall_blocked"
    assert relay.services.metrics.tokens.get("refunded") > 0
    (denied,) = [e for e in await _events(relay) if e["verdict"] == "deny"]
    assert (denied["point"], denied["rule_id"]) == ("response_call", "small-transfers")
    assert denied["arguments"] == '{"amount":5000}'


async def test_arguments_that_are_not_json_are_denied_unless_a_rule_allows_them(
    relay: Relay, upstream: Upstream
) -> None:
    await _policy(relay, "enforce")
    async with _client(relay) as client:
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}],
                extra_headers=_calls(("search", '{"q": "unterminated')))
    (denied,) = [e for e in await _events(relay) if e["verdict"] == "deny"]
    assert denied["rule_id"] == "invalid_arguments" and denied["arguments_invalid"] is True
    lenient = {**POLICY, "rules": [{"id": "lenient", "effect": "allow", "tools": ["search"],
                                    "invalid_arguments": True}, *POLICY["rules"]]}
    relay2_policy = await _policy(relay, "enforce", lenient)
    await relay.services.store.update_firewall_policy(
        (await relay.services.store.list_firewall_policies())[0].id, mode="shadow")
    await relay.services.access.refresh()
    async with _client(relay) as client:
        done = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}],
            extra_headers=_calls(("search", '{"q": "unterminated')))
    assert done.choices[0].message.tool_calls is not None
    latest = [e for e in await _events(relay) if e["policy_id"] == relay2_policy]
    assert [e["rule_id"] for e in latest if e["rule_id"]] == ["lenient"]


async def test_evidence_masks_secrets_in_arguments(relay: Relay, upstream: Upstream) -> None:
    await _policy(relay, "shadow")
    async with _client(relay) as client:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}],
            extra_headers=_calls(("search", {"q": f"key {AWS_KEY}"})))
    shadow_args = {**POLICY, "rules": [{"id": "look", "effect": "allow", "tools": ["search"]}]}
    await _policy(relay, "shadow", shadow_args)
    async with _client(relay) as client:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}],
            extra_headers=_calls(("search", {"q": f"key {AWS_KEY}"})))
    (call,) = [e for e in await _events(relay) if e["point"] == "response_call"]
    assert call["arguments"] == '{"q":"key [AWS_ACCESS_KEY_ID]"}'
    assert AWS_KEY not in orjson.dumps(await _events(relay)).decode()


async def test_the_firewall_decides_on_unmasked_input_and_its_deny_wins(
    relay: Relay, upstream: Upstream
) -> None:
    await _policy(relay, "enforce")
    await relay.add_guardrail("enforce", [
        {"id": "block-secrets", "categories": ["secret"], "action": "block", "on": "both"},
        {"id": "mask-pii", "categories": ["pii"], "action": "mask", "on": "both"}])
    # The host is an IP literal, which the guardrail would mask as PII before the firewall
    # could see it, if the firewall came second; the key alone would be a guardrail block.
    arguments = orjson.dumps({"url": "http://10.1.2.3/", "token": AWS_KEY}).decode()
    messages: list[Any] = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "fetch", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    async with _client(relay) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="m", messages=messages)
    assert caught.value.code == "firewall_blocked"


async def test_an_mcp_server_on_a_metadata_address_is_denied(
    relay: Relay, upstream: Upstream
) -> None:
    await _policy(relay, "enforce")
    mcp = {"type": "mcp", "server_label": "internal", "server_url":
           "http://metadata.google.internal/computeMetadata/v1/", "allowed_tools": ["read"]}
    async with _client(relay) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}],
                extra_body={"tools": [mcp]})
    assert caught.value.code == "firewall_blocked"
    denied, by_default = await _events(relay)
    assert (denied["point"], denied["tool"], denied["host"], denied["verdict"]) == (
        "egress", "internal", "metadata.google.internal", "deny")
    assert [(d["point"], d["tool"]) for d in by_default["decisions"]] == [
        ("mcp_server", "internal"), ("tool_definition", "read")]


async def test_a_stored_policy_that_no_longer_parses_denies_everything(
    relay: Relay, upstream: Upstream
) -> None:
    await _policy(relay, "shadow", {"schema": 99, "rules": []})
    async with _client(relay) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}], tools=TOOLS)
    assert caught.value.code == "firewall_blocked"


async def test_streams_of_other_routes_are_refused_under_an_enforcing_policy(
    make_relay: RelayFactory, upstream: Upstream
) -> None:
    relay = await make_relay(upstream)
    await _policy(relay, "enforce")
    async with _client(relay) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.completions.create(model="m", prompt="hi", stream=True)
    assert refused.value.code == "firewall_stream_unsupported"


async def test_responses_calls_are_denied_whole_and_decided_in_shadow_streams(
    make_relay: RelayFactory, upstream: Upstream
) -> None:
    relay = await make_relay(upstream)
    metadata = _calls(("fetch", {"url": "http://169.254.169.254/"}))
    policy_id = await _policy(relay, "enforce")
    async with _client(relay) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.responses.create(model="m", input="go", extra_headers=metadata)
        assert caught.value.code == "firewall_blocked"
        await relay.services.store.update_firewall_policy(policy_id, mode="shadow")
        await relay.services.access.refresh()
        stream = await client.responses.create(model="m", input="go", stream=True,
                                               extra_headers=metadata)
        kinds = [event.type async for event in stream]
    assert kinds[-1] == "response.completed"
    shadow = [e for e in await _events(relay) if e["mode"] == "shadow"]
    assert [(e["point"], e["host"], e["would_have"]) for e in shadow] == [
        ("egress", "169.254.169.254", True), (None, None, False)]


async def test_shadow_and_enforce_make_the_same_decisions_on_the_same_traffic(
    make_relay: RelayFactory, upstream: Upstream
) -> None:
    tools: list[Any] = [*TOOLS, {"type": "function", "function": {"name": "run_command"}}]
    decided: dict[str, list[tuple[Any, ...]]] = {}
    for mode in ("shadow", "enforce"):
        relay = await make_relay(upstream)
        await _policy(relay, mode)
        async with _client(relay) as client:
            try:
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "x"}], tools=tools)
            except openai.BadRequestError as exc:
                assert mode == "enforce" and exc.code == "firewall_blocked"
            else:
                assert mode == "shadow"
        decided[mode] = [(e["point"], e["tool"], e["rule_id"], e["verdict"], e["outcome"],
                          e["would_have"]) for e in await _events(relay)]
    assert decided["shadow"] == [
        ("tool_definition", "run_command", "no-shell", "deny", "allowed", True),
        (None, None, None, "allow", "allowed", False)]
    assert decided["enforce"] == [
        ("tool_definition", "run_command", "no-shell", "deny", "denied", False),
        (None, None, None, "allow", "allowed", False)]
