"""The /v1 handlers over raw loopback HTTP: headers, streaming, disconnects, metering."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import PROVIDER_KEY, Relay, RelayFactory, Upstream

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def _json_headers(relay: Relay, **extra: str) -> dict[str, str]:
    return {**relay.headers(), "Content-Type": "application/json", **extra}


async def _post(relay: Relay, body: Any, **headers: str) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            relay.base_url + "/chat/completions",
            data=orjson.dumps(body),
            headers=_json_headers(relay, **headers),
        )
        await response.read()
        return response


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "code"),
    [
        ("POST", "/v1/chat/completions", {}, b"{}", 401, "invalid_api_key"),
        ("POST", "/v1/chat/completions", {"Authorization": "Basic abc"}, b"{}", 401,
         "invalid_api_key"),
        ("GET", "/v1/chat/completions", None, None, 405, "method_not_allowed"),
        ("POST", "/v1/audio/speech", None, b"{}", 404, "route_not_found"),
        ("GET", "/v2/anything", None, None, 404, "route_not_found"),
        ("POST", "/v1/chat/completions", None, b'{"model": "m"}', 400,
         "missing_required_parameter"),
        ("POST", "/v1/chat/completions", None, b'{"model": 1, "messages": []}', 400,
         "invalid_type"),
        ("POST", "/v1/chat/completions", None, b'{"model": "m", "messages": []}', 400,
         "invalid_value"),
        ("POST", "/v1/chat/completions", None, b'{"model": "m", "messages": [1]}', 400,
         "invalid_type"),
        ("POST", "/v1/chat/completions", None,
         b'{"model": "m", "messages": [{"role": "user", "content": 5}]}', 400, "invalid_type"),
        ("POST", "/v1/chat/completions", None, b"", 400, "invalid_json"),
        ("POST", "/v1/embeddings", None, b'{"input": "x"}', 400, "missing_required_parameter"),
        ("POST", "/v1/chat/completions", None,
         b'{"model": "m", "messages": [{"role": "user"}], "stream": "yes"}', 400, "invalid_type"),
    ],
)
async def test_every_error_is_openai_shaped_with_a_request_id(
    relay: Relay,
    method: str,
    path: str,
    headers: dict[str, str] | None,
    body: bytes | None,
    status: int,
    code: str,
) -> None:
    sent = _json_headers(relay) if headers is None else {"Content-Type": "application/json",
                                                         **headers}
    async with aiohttp.ClientSession() as session:
        url = relay.base_url.removesuffix("/v1") + path
        async with session.request(method, url, data=body, headers=sent) as response:
            payload = await response.json()
            assert response.status == status
            assert response.headers["x-request-id"].startswith("req_")
            assert float(response.headers["x-orca-overhead-ms"]) >= 0
    assert set(payload["error"]) == {"message", "type", "param", "code"}
    assert payload["error"]["code"] == code
    assert payload["error"]["message"]


async def test_error_messages_name_the_field(relay: Relay) -> None:
    bad = {"model": "m", "messages": [{"role": "user", "content": "ok"},
                                      {"role": "user", "content": [{"type": "text"}, "x"]}]}
    response = await _post(relay, bad)
    payload = orjson.loads(await response.read())
    assert payload["error"]["param"] == "messages[1].content[1]"
    assert "messages[1].content[1]" in payload["error"]["message"]


async def test_hop_by_hop_and_credentials_are_not_forwarded(
    relay: Relay, upstream: Upstream
) -> None:
    response = await _post(
        relay, CHAT, Connection="keep-alive, X-Secret-Hop", **{
            "X-Secret-Hop": "1", "Keep-Alive": "timeout=5", "Cookie": "session=abc",
            "OpenAI-Organization": "org-client", "X-Custom": "kept", "Proxy-Authorization": "x",
        }
    )
    assert response.status == 200
    seen = {k.lower(): v for k, v in upstream.mock.seen[-1].headers.items()}
    for name in ("x-secret-hop", "keep-alive", "cookie", "openai-organization",
                 "proxy-authorization"):
        assert name not in seen, name
    assert seen["x-custom"] == "kept"
    assert seen["authorization"] == f"Bearer {PROVIDER_KEY}"


async def test_upstream_request_id_is_kept_apart(relay: Relay, upstream: Upstream) -> None:
    response = await _post(relay, CHAT)
    assert response.headers["x-request-id"].startswith("req_")
    assert "Set-Cookie" not in response.headers


async def _open_stream(
    session: aiohttp.ClientSession, relay: Relay, **headers: str
) -> aiohttp.ClientResponse:
    return await session.post(
        relay.base_url + "/chat/completions",
        data=orjson.dumps({**CHAT, "stream": True}),
        headers=_json_headers(relay, **headers),
    )


async def test_stream_is_relayed_before_the_upstream_finishes(
    relay: Relay, upstream: Upstream
) -> None:
    """The upstream sends three events and then goes silent: the client must already have
    them (a relay that buffered the stream would deliver nothing)."""
    async with aiohttp.ClientSession() as session:
        response = await _open_stream(session, relay, **{"x-mock-fault": "stall:3"})
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["x-request-id"].startswith("req_")
        received = b""
        async with asyncio.timeout(5):
            while received.count(b"\n\n") < 3:
                received += await response.content.readany()
        events = [orjson.loads(line[6:]) for line in received.split(b"\n\n") if line]
        assert [e["choices"][0]["delta"].get("content") for e in events] == ["", "You", " said:"]
        assert all("usage" not in e for e in events)
        response.close()  # the client leaves mid-stream
    # ...and the relay cancels the upstream request: no leaked stream.
    async with asyncio.timeout(5):
        await upstream.mock.wait_for(lambda: upstream.mock.aborted == 1)
    assert upstream.mock.open_streams == 0
    # The relay closed the upstream from its handler's cleanup, after releasing its gauges.
    metrics = relay.services.metrics
    assert metrics.inflight_streams.get() == 0
    assert metrics.inflight_requests.get() == 0


async def test_client_leaving_a_slow_request_cancels_the_upstream_call(
    relay: Relay, upstream: Upstream
) -> None:
    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(
            session.post(relay.base_url + "/chat/completions", data=orjson.dumps(CHAT),
                         headers=_json_headers(relay, **{"x-mock-fault": "slow:30"}))
        )
        async with asyncio.timeout(5):
            await upstream.mock.wait_for(lambda: len(upstream.mock.seen) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    async with asyncio.timeout(5):
        await upstream.mock.wait_for(lambda: upstream.mock.aborted == 1)


async def test_stream_usage_is_metered_once(relay: Relay, upstream: Upstream) -> None:
    key_id, secret = await relay.create_key(quota_tokens=1_000_000, quota_period="month")
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            relay.base_url + "/chat/completions", data=orjson.dumps({**CHAT, "stream": True}),
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        )
        body = await response.read()
    assert body.endswith(b"data: [DONE]\n\n")
    assert b'"usage"' not in body
    await relay.services.access.refresh()
    key = await relay.services.store.get_key(key_id)
    assert key is not None
    from relay.proxy.access import bucket_of

    bucket = bucket_of(key)
    assert bucket is not None
    usage = await relay.services.store.usage([bucket, (key_id, "total")])
    assert usage[bucket] == usage[(key_id, "total")] > 0
    assert relay.services.access.used(bucket) == usage[bucket]


async def test_refused_requests_are_not_metered(relay: Relay) -> None:
    metrics = relay.services.metrics
    before = metrics.tokens.get("metered")
    response = await _post(relay, {"model": "m", "messages": "nope"})
    assert response.status == 400
    response = await _post(relay, CHAT, **{"x-mock-fault": "status:500"})
    assert response.status == 500
    assert metrics.tokens.get("metered") == before


async def test_metrics_count_requests_by_route_and_status(relay: Relay) -> None:
    await _post(relay, CHAT)
    await _post(relay, {"model": "m"})
    async with aiohttp.ClientSession() as session:
        async with session.get(relay.admin_url + "/metrics") as response:
            text = await response.text()
    assert 'orca_relay_requests_total{route="chat_completions",status="200"} 1.0' in text
    assert 'orca_relay_requests_total{route="chat_completions",status="400"} 1.0' in text
    for name in ("orca_relay_request_duration_seconds_bucket",
                 "orca_relay_upstream_duration_seconds_bucket",
                 "orca_relay_overhead_seconds_bucket", "orca_relay_tokens_total",
                 "orca_relay_quota_rejections_total", "orca_relay_inflight_requests",
                 "orca_relay_inflight_streams", "orca_relay_evidence_queue_depth",
                 "orca_relay_evidence_write_failures_total"):
        assert name in text, name
    assert relay.key not in text and "sk-orca" not in text and "hello" not in text


async def test_health_and_readiness(relay: Relay) -> None:
    async with aiohttp.ClientSession() as session:
        for url in (relay.base_url.removesuffix("/v1") + "/healthz", relay.admin_url + "/healthz",
                    relay.admin_url + "/readyz"):
            async with session.get(url) as response:
                assert response.status == 200, url


async def test_upstream_error_bodies_pass_through_faithfully(relay: Relay) -> None:
    response = await _post(relay, CHAT, **{"x-mock-fault": "status:418"})
    assert response.status == 418
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["x-request-id"].startswith("req_")


async def test_stream_garbage_from_upstream_ends_with_an_error_event(relay: Relay) -> None:
    async with aiohttp.ClientSession() as session:
        response = await _open_stream(session, relay, **{"x-mock-fault": "garbage"})
        body = await response.read()
    last = body.strip().split(b"\n\n")[-1]
    assert last.startswith(b"data: ")
    assert orjson.loads(last[6:])["error"]["code"] == "upstream_stream_interrupted"


async def test_overhead_header_is_small_against_a_slow_upstream(
    make_relay: RelayFactory, upstream: Upstream
) -> None:
    """Overhead excludes the upstream's time: a 300 ms upstream must not show up in it."""
    relay = await make_relay(upstream)
    response = await _post(relay, CHAT, **{"x-mock-fault": "slow:0.3"})
    assert response.status == 200
    assert float(response.headers["x-orca-overhead-ms"]) < 150
