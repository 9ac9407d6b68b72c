"""The official openai SDK (async and sync) against the relay on loopback: it must work as
against the upstream, and every error must raise the SDK's usual class with our code."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.conftest import PROVIDER_KEY, Relay, RelayFactory, Upstream

MESSAGES: list[Any] = [{"role": "user", "content": "hello relay"}]
WEATHER_TOOL: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]

AsyncClient = Callable[..., openai.AsyncOpenAI]
SyncClient = Callable[..., openai.OpenAI]


async def test_async_create_works_as_against_upstream(
    relay: Relay, upstream: Upstream, async_openai: AsyncClient
) -> None:
    raw = await async_openai().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "You said: hello relay"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert raw.headers["x-request-id"].startswith("req_")
    assert float(raw.headers["x-orca-overhead-ms"]) >= 0
    seen = upstream.mock.seen[-1]
    assert seen.body["messages"] == MESSAGES
    assert seen.headers["Authorization"] == f"Bearer {PROVIDER_KEY}"  # never the relay key


async def test_sync_create_and_stream(sync_openai: SyncClient) -> None:
    client = sync_openai()
    completion = await asyncio.to_thread(
        client.chat.completions.create, model="gpt-4o-mini", messages=MESSAGES
    )
    assert completion.choices[0].message.content == "You said: hello relay"

    def stream_text() -> str:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    assert await asyncio.to_thread(stream_text) == "You said: hello relay"


async def test_stream_hides_usage_the_client_did_not_ask_for(
    relay: Relay, upstream: Upstream, async_openai: AsyncClient
) -> None:
    stream = await async_openai().chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "You said: hello relay"
    assert all(c.usage is None and c.choices for c in chunks)
    # ...but the relay asked for it, and metered it.
    assert upstream.mock.seen[-1].body["stream_options"] == {"include_usage": True}
    assert relay.services.metrics.tokens.get("metered") > 0


async def test_stream_shows_usage_when_asked(async_openai: AsyncClient) -> None:
    stream = await async_openai().chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_calls(async_openai: AsyncClient, stream: bool) -> None:
    client = async_openai()
    headers = {"x-mock-tool-call": "get_weather", "x-mock-tool-args": '{"city": "Oslo"}'}
    if not stream:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, tools=WEATHER_TOOL, extra_headers=headers
        )
        call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert call.function.name == "get_weather"  # type: ignore[union-attr]
        assert call.function.arguments == '{"city": "Oslo"}'  # type: ignore[union-attr]
        return
    chunks = await client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, tools=WEATHER_TOOL, stream=True,
        extra_headers=headers,
    )
    name, arguments = "", ""
    async for chunk in chunks:
        for delta_call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name += (delta_call.function and delta_call.function.name) or ""
            arguments += (delta_call.function and delta_call.function.arguments) or ""
    assert (name, arguments) == ("get_weather", '{"city": "Oslo"}')


async def test_other_v1_routes_pass_through(async_openai: AsyncClient, relay: Relay) -> None:
    client = async_openai()
    models = await client.models.list()
    assert "gpt-4o-mini" in [m.id for m in models.data]
    assert (await client.models.retrieve("gpt-4o")).id == "gpt-4o"
    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve("no-such-model")
    assert missing.value.code == "model_not_found"
    embedding = await client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(embedding.data) == 2
    completion = await client.completions.create(model="gpt-4o-mini", prompt="Say hi")
    assert completion.choices[0].text == "mock completion"
    response = await client.responses.create(model="gpt-4o-mini", input="hi")
    assert response.output_text == "mock response"
    before = relay.services.metrics.tokens.get("metered")
    stream = await client.responses.create(model="gpt-4o-mini", input="hi", stream=True)
    kinds = [event.type async for event in stream]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert relay.services.metrics.tokens.get("metered") > before


# ---- errors: the SDK's usual exception class, with our code --------------------------


async def _error(call: Any) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        await call
    return caught.value


async def test_bad_missing_and_revoked_keys(relay: Relay, async_openai: AsyncClient) -> None:
    for key in ("sk-orca-not-a-real-key", "sk-proj-some-openai-key"):
        err = await _error(
            async_openai(key=key).chat.completions.create(model="m", messages=MESSAGES)
        )
        assert isinstance(err, openai.AuthenticationError) and err.code == "invalid_api_key"
    key_id, secret = await relay.create_key()
    ok = await async_openai(key=secret).chat.completions.create(model="m", messages=MESSAGES)
    assert ok.choices
    await relay.services.store.revoke_key(key_id)
    await relay.services.access.refresh()
    err = await _error(
        async_openai(key=secret).chat.completions.create(model="m", messages=MESSAGES)
    )
    assert isinstance(err, openai.AuthenticationError) and err.code == "invalid_api_key"


async def test_quota_exceeded(relay: Relay, async_openai: AsyncClient, upstream: Upstream) -> None:
    _, secret = await relay.create_key(quota_tokens=10, quota_period="day")
    client = async_openai(key=secret)
    first = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert first.usage is not None and first.usage.total_tokens >= 10
    calls = len(upstream.mock.seen)
    err = await _error(client.chat.completions.create(model="m", messages=MESSAGES))
    assert isinstance(err, openai.RateLimitError) and err.code == "quota_exceeded"
    assert len(upstream.mock.seen) == calls  # refused before the upstream


async def test_invalid_bodies(async_openai: AsyncClient) -> None:
    client = async_openai()
    err = await _error(client.chat.completions.create(model="m", messages="hi"))  # type: ignore[arg-type]
    assert isinstance(err, openai.BadRequestError)
    assert (err.code, err.param) == ("invalid_type", "messages")
    json_header: Any = {"headers": {"Content-Type": "application/json"}}
    for content, code in (
        (b'{"model": "m", "messages": [', "invalid_json"),
        (b'{"model": "m", "messages": "\xff\xfe"}', "invalid_utf8"),
        (b"[1, 2, 3]", "invalid_body"),
    ):
        err = await _error(
            client.post("/chat/completions", cast_to=object, content=content, options=json_header)
        )
        assert isinstance(err, openai.BadRequestError) and err.code == code, content
    err = await _error(
        client.chat.completions.create(
            model="m", messages=MESSAGES, extra_headers={"Content-Type": "text/plain"}
        )
    )
    assert isinstance(err, openai.BadRequestError) and err.code == "invalid_content_type"


async def test_oversized_body(make_relay: RelayFactory, upstream: Upstream) -> None:
    relay = await make_relay(upstream, max_body_bytes=4096)
    async with openai.AsyncOpenAI(base_url=relay.base_url, api_key=relay.key,
                                  max_retries=0) as client:
        big: Any = [{"role": "user", "content": "x" * 5000}]
        err = await _error(client.chat.completions.create(model="m", messages=big))
    assert err.status_code == 413 and err.code == "request_too_large"


@pytest.mark.parametrize(
    ("fault", "status", "code", "exc"),
    [
        ("status:400", 400, "mock_400", openai.BadRequestError),
        ("status:404", 404, "mock_404", openai.NotFoundError),
        ("status:429", 429, "mock_429", openai.RateLimitError),
        ("status:500", 500, "mock_500", openai.InternalServerError),
        ("status:503", 503, "mock_503", openai.InternalServerError),
        ("garbage", 502, "upstream_bad_response", openai.InternalServerError),
        ("slow:5", 504, "upstream_timeout", openai.InternalServerError),
    ],
)
async def test_upstream_failures(
    make_relay: RelayFactory,
    upstream: Upstream,
    fault: str,
    status: int,
    code: str,
    exc: type[openai.APIStatusError],
) -> None:
    relay = await make_relay(upstream, upstream_timeout_seconds=0.5)
    async with openai.AsyncOpenAI(base_url=relay.base_url, api_key=relay.key,
                                  max_retries=0) as client:
        err = await _error(
            client.chat.completions.create(
                model="m", messages=MESSAGES, extra_headers={"x-mock-fault": fault}
            )
        )
    assert isinstance(err, exc)
    assert (err.status_code, err.code) == (status, code)
    assert err.response.headers["x-request-id"].startswith("req_")


async def test_upstream_down_is_502(make_relay: RelayFactory, unused_tcp_port: int) -> None:
    relay = await make_relay(None, upstream_url=f"http://127.0.0.1:{unused_tcp_port}/v1")
    async with openai.AsyncOpenAI(base_url=relay.base_url, api_key=relay.key,
                                  max_retries=0) as client:
        err = await _error(client.chat.completions.create(model="m", messages=MESSAGES))
    assert isinstance(err, openai.InternalServerError)
    assert (err.status_code, err.code) == (502, "upstream_unreachable")


@pytest.mark.parametrize(("fault", "code"), [("drop:3", "upstream_stream_interrupted"),
                                             ("stall:3", "upstream_timeout")])
async def test_stream_failure_mid_stream_is_an_sdk_error(
    make_relay: RelayFactory, upstream: Upstream, fault: str, code: str
) -> None:
    relay = await make_relay(upstream, upstream_timeout_seconds=0.5)
    async with openai.AsyncOpenAI(base_url=relay.base_url, api_key=relay.key,
                                  max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, extra_headers={"x-mock-fault": fault}
        )
        received = []
        with pytest.raises(openai.APIError) as caught:
            async for chunk in stream:
                received.append(chunk)
    assert len(received) == 3
    assert caught.value.code == code
