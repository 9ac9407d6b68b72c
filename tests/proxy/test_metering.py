"""Usage extraction and the usage chunk a client did not ask for."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from relay.metrics import RelayMetrics
from relay.proxy.metering import MeteringFilter, tokens_of, usage_in
from relay.proxy.pipeline import CONTINUE, DROP, Exchange
from relay.proxy.sse import SSEDecoder
from relay.store.base import RelayKey

KEY = RelayKey("key_1", "ws_1", "k", "h", "sk-orca-abcd", "2026-01-01T00:00:00Z")


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [
        ({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}, 7),
        ({"prompt_tokens": 3, "completion_tokens": 4}, 7),
        ({"input_tokens": 10, "output_tokens": 2}, 12),
        ({"prompt_tokens": 5, "total_tokens": 5}, 5),
        ({"total_tokens": -1, "prompt_tokens": 2}, 2),
        ({"total_tokens": True}, 0),
        (None, 0),
        ("lots", 0),
    ],
)
def test_tokens_of(usage: Any, tokens: int) -> None:
    assert tokens_of(usage) == tokens


def test_usage_in_finds_responses_usage() -> None:
    assert usage_in({"type": "response.completed", "response": {"usage": {"a": 1}}}) == {"a": 1}
    assert usage_in([1]) is None


class FakeAccess:
    def __init__(self) -> None:
        self.metered: list[int] = []

    def check_quota(self, key: RelayKey) -> None:
        return None

    def meter(self, key: RelayKey, tokens: int) -> None:
        self.metered.append(tokens)


def _filter() -> tuple[MeteringFilter, FakeAccess]:
    access = FakeAccess()
    return MeteringFilter(access, RelayMetrics()), access  # type: ignore[arg-type]


def _stream_exchange(stream_options: Any = None) -> Exchange:
    body: dict[str, Any] = {"model": "m", "messages": [], "stream": True}
    if stream_options is not None:
        body["stream_options"] = stream_options
    return Exchange("req", "chat_completions", KEY, body, stream=True)


UPSTREAM = (
    b'data: {"id":"c","usage":null,"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    b'data: {"usage":null,"id":"c","choices":[{"index":0,"delta":{"content":"!"}}]}\n\n'
    b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3,'
    b'"total_tokens":5}}\n\n'
    b"data: [DONE]\n\n"
)


def test_usage_chunk_is_requested_metered_and_hidden() -> None:
    f, access = _filter()
    x = _stream_exchange({"some_future_option": 1})
    assert f.decode_request(x) is CONTINUE
    assert x.body_changed
    assert x.body is not None
    assert x.body["stream_options"] == {"some_future_option": 1, "include_usage": True}
    out = b""
    for event in SSEDecoder().feed(UPSTREAM):
        verdict = f.encode_chunk(x, event)
        if verdict is not DROP:
            out += event.raw
    assert b"usage" not in out
    assert out.count(b"data: ") == 3 and out.endswith(b"data: [DONE]\n\n")
    first = orjson.loads(out.split(b"\n\n")[0][6:])
    assert first == {"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}}]}
    f.on_complete(x)
    assert access.metered == [5]


def test_usage_the_client_asked_for_is_kept() -> None:
    f, access = _filter()
    x = _stream_exchange({"include_usage": True})
    f.decode_request(x)
    assert not x.body_changed
    events = SSEDecoder().feed(UPSTREAM)
    assert all(f.encode_chunk(x, e) is CONTINUE for e in events)
    assert b"".join(e.raw for e in events) == UPSTREAM
    f.on_complete(x)
    assert access.metered == [5]


def test_usage_on_a_content_chunk_keeps_the_content() -> None:
    f, _ = _filter()
    x = _stream_exchange()
    f.decode_request(x)
    (event,) = SSEDecoder().feed(
        b'data: {"choices":[{"delta":{"content":"x"}}],"usage":{"total_tokens":9}}\n\n')
    assert f.encode_chunk(x, event) is CONTINUE
    assert orjson.loads(event.data) == {"choices": [{"delta": {"content": "x"}}]}
    assert x.usage_tokens == 9


def test_refunded_answers_are_not_metered() -> None:
    f, access = _filter()
    x = _stream_exchange()
    x.usage_tokens = 40
    x.metadata["refund"] = True
    f.on_complete(x)
    assert access.metered == []
