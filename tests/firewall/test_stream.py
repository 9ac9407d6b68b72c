"""Streamed tool calls under the firewall: assembled, decided whole, never leaked in part."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.conftest import Relay, Upstream

POLICY: dict[str, Any] = {
    "schema": 1,
    "rules": [{"preset": "no_private_egress"}],
}
ALLOWED = orjson.dumps({"url": "https://example.com/a"}).decode()
DENIED = orjson.dumps({"url": "http://169.254.169.254/latest/meta-data/"}).decode()


async def _policy(relay: Relay, mode: str) -> None:
    await relay.add_firewall_policy(mode, POLICY)


async def _raw_stream(relay: Relay, calls: list[tuple[str, str]], chunks: int) -> bytes:
    headers = {**relay.headers(), "x-mock-chunks": str(chunks), "x-mock-tool-calls":
               orjson.dumps([{"name": n, "arguments": a} for n, a in calls]).decode()}
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    async with aiohttp.ClientSession() as session, session.post(
        f"{relay.base_url}/chat/completions", json=body, headers=headers
    ) as response:
        assert response.status == 200
        return await response.read()


def _events(raw: bytes) -> list[Any]:
    out: list[Any] = []
    for block in raw.split(b"\n\n"):
        if block.startswith(b"data: "):
            data = block[len(b"data: "):]
            out.append(data if data == b"[DONE]" else orjson.loads(data))
    return out


def _assembled(events: list[Any]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for event in events:
        if not isinstance(event, dict):
            continue
        for choice in event.get("choices", []):
            for piece in choice["delta"].get("tool_calls") or []:
                call = calls.setdefault(piece["index"], {"name": "", "arguments": ""})
                function = piece.get("function", {})
                call["name"] += function.get("name") or ""
                call["arguments"] += function.get("arguments") or ""
    return calls


@pytest.mark.parametrize("chunks", range(1, len(DENIED) + 1))
async def test_no_part_of_a_denied_streamed_call_reaches_the_client(
    relay: Relay, upstream: Upstream, chunks: int
) -> None:
    await _policy(relay, "enforce")
    raw = await _raw_stream(relay, [("fetch", ALLOWED), ("fetch", DENIED)], chunks)
    events = _events(raw)
    assert events[-1] == {"error": {
        "message": "the response was denied by the workspace firewall (a tool call it may "
                   "not make); see the Events feed for this request id",
        "type": "invalid_request_error", "param": None, "code": "firewall_blocked"}}
    assert b"169.254" not in raw and b"meta-data" not in raw
    assert b"[DONE]" not in raw
    # The stream ends before the upstream's usage chunk: nothing is metered to the key.
    assert relay.services.metrics.tokens.get("metered") == 0


@pytest.mark.parametrize("chunks", [1, 2, 5, len(ALLOWED)])
async def test_allowed_streamed_calls_arrive_whole_after_the_decision(
    relay: Relay, upstream: Upstream, chunks: int
) -> None:
    await _policy(relay, "enforce")
    raw = await _raw_stream(relay, [("fetch", ALLOWED), ("search", '{"q": "x"}')], chunks)
    events = _events(raw)
    assert events[-1] == b"[DONE]"
    assert _assembled(events) == {0: {"name": "fetch", "arguments": ALLOWED},
                                  1: {"name": "search", "arguments": '{"q": "x"}'}}
    # held back: each call goes out as one delta, right before the finishing chunk
    with_calls = [e for e in events if isinstance(e, dict) and e.get("choices")
                  and e["choices"][0]["delta"].get("tool_calls")]
    assert len(with_calls) == 2
    finish = next(i for i, e in enumerate(events) if isinstance(e, dict) and e.get("choices")
                  and e["choices"][0].get("finish_reason"))
    assert events.index(with_calls[-1]) == finish - 1


async def test_shadow_passes_the_deltas_untouched_and_records(
    relay: Relay, upstream: Upstream
) -> None:
    await _policy(relay, "shadow")
    raw = await _raw_stream(relay, [("fetch", DENIED)], 4)
    events = _events(raw)
    assert _assembled(events) == {0: {"name": "fetch", "arguments": DENIED}}
    pieces = [e for e in events if isinstance(e, dict) and e.get("choices")
              and e["choices"][0]["delta"].get("tool_calls")]
    assert len(pieces) == 5  # the opening delta and four argument pieces, as sent
    found = await relay.services.store.list_events(relay.boot.workspace.id, "firewall")
    assert [(e["point"], e["would_have"], e["rule_id"]) for e in found] == [
        ("egress", True, "no_private_egress"), (None, False, None)]
    assert [d["point"] for d in found[1]["decisions"]] == ["response_call"]


async def test_the_sdk_raises_firewall_blocked_mid_stream(
    relay: Relay, upstream: Upstream
) -> None:
    await _policy(relay, "enforce")
    headers = {"x-mock-tool-calls": orjson.dumps([{"name": "fetch", "arguments": DENIED}])
               .decode()}
    async with openai.AsyncOpenAI(base_url=relay.base_url, api_key=relay.key,
                                  max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "go"}], stream=True,
            extra_headers=headers)
        with pytest.raises(openai.APIError) as caught:
            async for _ in stream:
                pass
    assert caught.value.code == "firewall_blocked"


async def test_allowed_calls_still_pass_the_guardrail_masking(
    relay: Relay, upstream: Upstream
) -> None:
    await _policy(relay, "enforce")
    await relay.add_guardrail(
        "enforce", [{"id": "mask-pii", "categories": ["pii"], "action": "mask", "on": "output"}])
    arguments = orjson.dumps({"url": "https://example.com/", "to": "jane.roe@example.org"})
    raw = await _raw_stream(relay, [("send", arguments.decode())], 7)
    assert b"jane.roe" not in raw
    assert _assembled(_events(raw)) == {0: {
        "name": "send", "arguments": '{"url":"https://example.com/","to":"[EMAIL_ADDRESS_1]"}'}}
