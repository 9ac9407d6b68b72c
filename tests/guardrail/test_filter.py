"""The guardrail through the relay on loopback: mask, block, observe, evidence, no leaks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from relay.guardrail.policy import GuardrailRuleError, parse_rules
from relay.store.base import GENESIS_HASH, GuardrailRecord, chain_hash, rfc3339_now
from tests.conftest import Relay, RelayFactory, Upstream

EMAIL = "jane.roe@example.org"
AWS_KEY = "AKIAZ7Q3KXW2M4H5PLTB"
RULES: list[dict[str, Any]] = [
    {"id": "mask-pii", "categories": ["pii"], "action": "mask", "on": "both"},
    {"id": "block-secrets", "categories": ["secret"], "action": "block", "on": "input"},
]


async def _guardrail(relay: Relay, mode: str, rules: list[dict[str, Any]] = RULES) -> str:
    return await relay.add_guardrail(mode, rules)


def _client(relay: Relay) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=relay.base_url, api_key=relay.key, max_retries=0)


async def _events(relay: Relay) -> list[dict[str, Any]]:
    return await relay.services.store.list_events(relay.boot.workspace.id, "guardrail")


async def test_enforce_masks_input_before_it_leaves(relay: Relay, upstream: Upstream) -> None:
    guardrail_id = await _guardrail(relay, "enforce")
    text = f"mail {EMAIL} and again {EMAIL}, or boss@example.com"
    async with _client(relay) as client:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": text}])
    sent = upstream.mock.seen[-1].body["messages"][0]["content"]
    assert sent == ("mail [EMAIL_ADDRESS_1] and again [EMAIL_ADDRESS_1], "
                    "or [EMAIL_ADDRESS_2]")
    events = await _events(relay)
    assert len(events) == 3
    first = events[0]
    assert (first["verdict"], first["outcome"], first["would_have"], first["mode"]) == (
        "mask", "masked", False, "enforce")
    assert first["guardrail_id"] == guardrail_id and first["rule_id"] == "mask-pii"
    assert first["location"] == {"stage": "input", "path": "messages[0].content"}
    assert first["value_hmac"] == events[1]["value_hmac"] != events[2]["value_hmac"]
    assert EMAIL not in orjson.dumps(events).decode()


async def test_enforce_blocks_secrets_before_the_upstream_and_metering(
    relay: Relay, upstream: Upstream
) -> None:
    await _guardrail(relay, "enforce")
    async with _client(relay) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"key {AWS_KEY}"}])
    assert caught.value.code == "guardrail_blocked"
    assert upstream.mock.seen == []
    assert relay.services.metrics.tokens.get("metered") == 0
    (event,) = await _events(relay)
    assert (event["verdict"], event["outcome"], event["category"]) == (
        "block", "blocked", "secret")


async def test_observe_changes_no_byte_and_records_would_have(
    relay: Relay, upstream: Upstream
) -> None:
    await _guardrail(relay, "observe")
    content = f"{EMAIL} {AWS_KEY}"
    async with _client(relay) as client:
        done = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": content}])
    assert done.choices[0].message.content == f"You said: {content}"
    assert upstream.mock.seen[-1].body["messages"][0]["content"] == content
    events = await _events(relay)
    # input: email (mask) and key (block); output: the echoed email (mask on both)
    assert sorted((e["verdict"], e["outcome"], e["would_have"]) for e in events) == [
        ("block", "flagged", True), ("mask", "flagged", True), ("mask", "flagged", True)]
    text = (await _metrics(relay))
    assert ('orca_relay_guardrail_findings_total{category="pii",mode="observe",'
            'outcome="flagged",verdict="mask"} 2.0') in text


async def test_output_is_masked_and_blocked(make_relay: RelayFactory, upstream: Upstream) -> None:
    relay = await make_relay(upstream)
    await _guardrail(relay, "enforce", [
        {"id": "mask-mail", "detectors": ["email_address"], "action": "mask", "on": "output"},
        {"id": "no-keys-out", "categories": ["secret"], "action": "block", "on": "output"},
    ])
    async with _client(relay) as client:
        masked = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-mock-reply": f"write to {EMAIL}"})
        assert masked.choices[0].message.content == "write to [EMAIL_ADDRESS_1]"
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}],
                extra_headers={"x-mock-reply": f"use {AWS_KEY}"})
        assert caught.value.code == "guardrail_blocked"
        assert relay.services.metrics.tokens.get("refunded") > 0
        with pytest.raises(openai.BadRequestError) as refused:
            await client.completions.create(model="m", prompt="hi", stream=True)
        assert refused.value.code == "guardrail_stream_unsupported"


async def test_events_form_a_gapless_hash_chain(relay: Relay) -> None:
    await _guardrail(relay, "observe")
    async with _client(relay) as client:
        for i in range(3):
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"{i} {EMAIL}"}])
    events = await _events(relay)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    previous = GENESIS_HASH
    for event in events:
        assert event["prev_hash"] == previous
        document = {k: v for k, v in event.items() if k not in ("prev_hash", "hash")}
        body = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        assert event["hash"] == chain_hash(previous, body)
        previous = event["hash"]


async def test_planted_values_never_reach_the_store_logs_or_metrics(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await _guardrail(relay, "enforce")
    card = "4111 1111 1111 1111"
    async with _client(relay) as client:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"{EMAIL} card {card}"}])
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": AWS_KEY}])
    assert len(await _events(relay)) >= 3
    await relay.services.store.flush()
    stored = _stored_bytes(Path(relay.settings.data_dir))
    text = await _metrics(relay)
    for planted in (EMAIL, AWS_KEY, card, card.replace(" ", "")):
        assert planted.encode() not in stored, planted
        assert planted not in caplog.text and planted not in text


def _stored_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("orca.db*"))


async def _metrics(relay: Relay) -> str:
    return relay.services.metrics.exposition().decode()


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([], "non-empty array"),
        ([{"id": "a", "action": "mask"}], "at least one detector or category"),
        ([{"id": "a", "categories": ["pii"], "action": "erase"}], "rules[0].action"),
        ([{"id": "a", "detectors": ["nope"], "action": "flag"}], "unknown name 'nope'"),
        ([{"id": "a", "categories": ["pii"], "action": "flag", "when": 1}], "unknown field"),
        ([{"id": "a", "categories": ["pii"], "action": "flag", "on": "sideways"}], "rules[0].on"),
        ([{"id": "a", "categories": ["pii"], "action": "flag"},
          {"id": "a", "categories": ["pii"], "action": "flag"}], "duplicate rule id"),
    ],
)
def test_bad_rules_are_refused_precisely(rules: Any, message: str) -> None:
    with pytest.raises(GuardrailRuleError, match=message.replace("[", r"\[")):
        parse_rules(rules, ["email_address"])


def test_the_strictest_matching_rule_wins() -> None:
    from relay.guardrail.policy import Guardrail

    rules = parse_rules([
        {"id": "flag-all", "categories": ["pii", "secret"], "action": "flag"},
        {"id": "block-mail", "detectors": ["email_address"], "action": "block", "on": "input"},
    ], ["email_address"])
    g = Guardrail("g", "ws", "n", "enforce", rules)
    assert g.rule_for("email_address", "pii", "input").id == "block-mail"  # type: ignore[union-attr]
    assert g.rule_for("email_address", "pii", "output").id == "flag-all"  # type: ignore[union-attr]
    assert g.rule_for("us_ssn", "pii", "output").id == "flag-all"  # type: ignore[union-attr]


async def _stream_chunks(relay: Relay, reply: str, chunks: int) -> list[dict[str, Any]]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(
            relay.base_url + "/chat/completions",
            data=orjson.dumps({"model": "m", "stream": True,
                               "messages": [{"role": "user", "content": "hi"}]}),
            headers={**relay.headers(), "Content-Type": "application/json",
                     "x-mock-reply": reply, "x-mock-chunks": str(chunks)},
        ) as response:
            body = await response.read()
    return [orjson.loads(e[6:]) for e in body.split(b"\n\n") if e.startswith(b"data: {")]


def _content(events: list[dict[str, Any]]) -> str:
    return "".join(
        (c.get("delta") or {}).get("content") or ""
        for e in events for c in e.get("choices", []))


@pytest.mark.parametrize("chunks", [2, 3, 5, 1000])
async def test_streamed_output_is_masked_whatever_the_split(
    relay: Relay, chunks: int
) -> None:
    await _guardrail(relay, "enforce", [
        {"id": "mask-mail", "detectors": ["email_address"], "action": "mask", "on": "output"}])
    reply = f"Write to {EMAIL} today please."
    events = await _stream_chunks(relay, reply, chunks)  # 1000: one character per chunk
    assert _content(events) == "Write to [EMAIL_ADDRESS_1] today please."
    for event in events:
        piece = orjson.dumps(event).decode()
        assert not any(EMAIL[:n] in piece for n in range(5, len(EMAIL) + 1))
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


async def test_a_block_mid_stream_ends_it_with_one_error_event(relay: Relay) -> None:
    await _guardrail(relay, "enforce", [
        {"id": "no-keys", "categories": ["secret"], "action": "block", "on": "output"}])
    events = await _stream_chunks(relay, f"the key is {AWS_KEY} ok", 1000)
    assert events[-1]["error"]["code"] == "guardrail_blocked"
    assert AWS_KEY[:5] not in _content(events[:-1])
    (event,) = await _events(relay)
    assert (event["outcome"], event["location"]["stage"]) == ("blocked", "output")


async def test_observe_streams_pass_untouched_and_are_recorded(relay: Relay) -> None:
    await _guardrail(relay, "observe")
    reply = f"Write to {EMAIL} today."
    events = await _stream_chunks(relay, reply, 4)
    assert _content(events) == reply
    (event,) = await _events(relay)
    assert (event["verdict"], event["outcome"], event["would_have"]) == ("mask", "flagged", True)
    assert event["location"]["path"] == "choices[0].delta.content"


async def test_streamed_tool_call_arguments_are_masked(relay: Relay) -> None:
    await _guardrail(relay, "enforce", [
        {"id": "mask-pii", "categories": ["pii"], "action": "mask", "on": "output"}])
    async with _client(relay) as client:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True,
            tools=[{"type": "function", "function": {"name": "send", "parameters": {}}}],
            extra_headers={"x-mock-tool-call": "send",
                           "x-mock-tool-args": orjson.dumps({"to": EMAIL}).decode(),
                           "x-mock-chunks": "7"})
        arguments = ""
        async for chunk in stream:
            for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                arguments += (call.function and call.function.arguments) or ""
    assert orjson.loads(arguments) == {"to": "[EMAIL_ADDRESS_1]"}


async def test_pack_guardrails_evaluate_all_traffic_beside_the_keys_own(
    relay: Relay, upstream: Upstream
) -> None:
    own = await relay.add_guardrail("enforce", [
        {"id": "mask-mail", "detectors": ["email_address"], "action": "mask", "on": "input"}])
    now = rfc3339_now()
    pack = GuardrailRecord("gr_pack", relay.boot.workspace.id, "pack", "observe", [
        {"id": "pack.block-pii", "categories": ["pii"], "action": "block", "on": "input"},
        {"id": "pack.mask-mail", "detectors": ["email_address"], "action": "mask",
         "on": "input"}], False, "pack:soc2", now, now)
    await relay.services.store.create_guardrail(pack)
    await relay.services.access.refresh()
    async with _client(relay) as client:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"to {EMAIL}"}])
    # the key's guardrail masks; the pack's (observe) only records what it would do
    assert upstream.mock.seen[-1].body["messages"][0]["content"] == "to [EMAIL_ADDRESS_1]"
    events = [e for e in await _events(relay) if e["location"]["stage"] == "input"]
    assert sorted((e["guardrail_id"], e["rule_id"], e["outcome"], e["would_have"])
                  for e in events) == sorted([
        (own, "mask-mail", "masked", False),
        ("gr_pack", "pack.block-pii", "flagged", True)])
    # enforced, the pack's block wins over the key's mask
    await relay.services.store.update_guardrail("gr_pack", mode="enforce")
    await relay.services.access.refresh()
    async with _client(relay) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"to {EMAIL}"}])
    assert caught.value.code == "guardrail_blocked"
