"""The filter chain: order, short-circuit, and failing closed."""

from __future__ import annotations

import pytest

from relay.errors import InternalError, QuotaExceeded
from relay.proxy.pipeline import (
    CONTINUE,
    DROP,
    Chain,
    Exchange,
    Filter,
    LocalReply,
    Prepend,
    Verdict,
)
from relay.proxy.sse import SSEEvent
from relay.store.base import RelayKey

KEY = RelayKey("key_1", "ws_1", "k", "h", "sk-orca-abcd", "2026-01-01T00:00:00Z")


def exchange() -> Exchange:
    return Exchange("req_1", "chat_completions", KEY, {"model": "m", "messages": []})


class Recorder(Filter):
    def __init__(self, name: str, log: list[str], decode: Verdict = CONTINUE,
                 chunk: Verdict = CONTINUE) -> None:
        self.name = name
        self._log = log
        self._decode = decode
        self._chunk = chunk

    def decode_request(self, x: Exchange) -> Verdict:
        self._log.append(f"decode:{self.name}")
        return self._decode

    def encode_response(self, x: Exchange) -> Verdict:
        self._log.append(f"encode:{self.name}")
        return CONTINUE

    def encode_chunk(self, x: Exchange, event: SSEEvent) -> Verdict:
        self._log.append(f"chunk:{self.name}")
        return self._chunk

    def on_complete(self, x: Exchange) -> None:
        self._log.append(f"complete:{self.name}")


class Exploding(Filter):
    name = "exploding"

    def decode_request(self, x: Exchange) -> Verdict:
        raise RuntimeError("bug")

    encode_response = decode_request

    def encode_chunk(self, x: Exchange, event: SSEEvent) -> Verdict:
        raise RuntimeError("bug")

    def on_complete(self, x: Exchange) -> None:
        raise RuntimeError("bug")


def test_decode_in_order_encode_in_reverse() -> None:
    log: list[str] = []
    chain = Chain([Recorder("a", log), Recorder("b", log)])
    x = exchange()
    assert chain.decode_request(x) is None
    assert chain.encode_response(x) is None
    assert chain.encode_chunk(x, SSEEvent(b"data: x\n\n", b"x")) is CONTINUE
    chain.on_complete(x)
    assert log == ["decode:a", "decode:b", "encode:b", "encode:a", "chunk:b", "chunk:a",
                   "complete:a", "complete:b"]


def test_a_local_reply_stops_the_chain() -> None:
    log: list[str] = []
    reply = LocalReply(QuotaExceeded("over"))
    chain = Chain([Recorder("a", log, decode=reply), Recorder("b", log, chunk=DROP)])
    x = exchange()
    assert chain.decode_request(x) is reply
    assert log == ["decode:a"]
    assert chain.encode_chunk(x, SSEEvent(b"", b"")) is DROP
    assert log == ["decode:a", "chunk:b"]  # "a" never saw the dropped event


@pytest.mark.parametrize("stage", ["decode_request", "encode_response", "encode_chunk"])
def test_a_failing_control_refuses_the_request(stage: str) -> None:
    chain = Chain([Exploding()])
    x = exchange()
    if stage == "encode_chunk":
        verdict = chain.encode_chunk(x, SSEEvent(b"", b""))
    else:
        verdict = getattr(chain, stage)(x)
    assert isinstance(verdict, LocalReply)
    assert isinstance(verdict.error, InternalError)
    assert verdict.error.status == 500 and "exploding" in verdict.error.message


def test_on_complete_failures_do_not_stop_later_filters() -> None:
    log: list[str] = []
    Chain([Exploding(), Recorder("after", log)]).on_complete(exchange())
    assert log == ["complete:after"]


def test_an_explicit_encode_order_replaces_the_reverse() -> None:
    log: list[str] = []
    a, b, c = Recorder("a", log), Recorder("b", log), Recorder("c", log)
    chain = Chain([a, b, c], encode_order=[b, c, a])
    x = exchange()
    chain.decode_request(x)
    chain.encode_response(x)
    assert log == ["decode:a", "decode:b", "decode:c", "encode:b", "encode:c", "encode:a"]
    with pytest.raises(ValueError, match="same filters"):
        Chain([a, b], encode_order=[a, c])


class Tagger(Filter):
    """Appends its name to every event's raw bytes, to show which events it saw."""

    def __init__(self, name: str, seen: list[bytes]) -> None:
        self.name = name
        self._seen = seen

    def encode_chunk(self, x: Exchange, event: SSEEvent) -> Verdict:
        self._seen.append(event.data)
        event.raw += self.name.encode()
        return CONTINUE


class Splitter(Filter):
    name = "splitter"

    def encode_chunk(self, x: Exchange, event: SSEEvent) -> Verdict:
        if event.data == b"2":
            return Prepend((SSEEvent(b"<1a>", b"1a"), SSEEvent(b"<1b>", b"1b")))
        return CONTINUE


def test_prepended_events_pass_the_later_filters_first_and_go_out_before() -> None:
    seen: list[bytes] = []
    early, splitter, late = Tagger("E", seen), Splitter(), Tagger("L", seen)
    chain = Chain([late, splitter, early], encode_order=[early, splitter, late])
    event = SSEEvent(b"<2>", b"2")
    assert chain.encode_chunk(exchange(), event) is CONTINUE
    assert seen == [b"2", b"1a", b"1b", b"2"]  # E saw 2; then L saw 1a, 1b and 2
    assert event.raw == b"<1a>L<1b>L<2>EL"


class DropsTwo(Filter):
    name = "drops-two"

    def encode_chunk(self, x: Exchange, event: SSEEvent) -> Verdict:
        return DROP if event.data == b"2" else CONTINUE


def test_prepended_events_still_go_out_when_the_current_one_is_dropped() -> None:
    splitter, dropper = Splitter(), DropsTwo()
    chain = Chain([dropper, splitter], encode_order=[splitter, dropper])
    event = SSEEvent(b"<2>", b"2")
    assert chain.encode_chunk(exchange(), event) is CONTINUE
    assert event.raw == b"<1a><1b>"
