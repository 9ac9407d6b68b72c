"""The SSE codec as playbooks: chunks in, events out, whatever the chunk boundaries."""

from __future__ import annotations

import pytest

from relay.proxy.sse import SSEDecoder, encode_json

STREAM = (
    b'data: {"a": 1}\n\n'
    b": a comment line\n\n"
    b"event: response.created\ndata: {\"b\": 2}\n\n"
    b"data: line one\ndata: line two\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    (None, b'{"a": 1}'),
    (b"response.created", b'{"b": 2}'),
    (None, b"line one\nline two"),
    (None, b"[DONE]"),
]


def _decode(chunks: list[bytes]) -> tuple[list[tuple[bytes | None, bytes]], SSEDecoder]:
    decoder = SSEDecoder()
    events = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return [(e.event, e.data) for e in events if e.data], decoder


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
def test_any_chunking_gives_the_same_events(size: int) -> None:
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    events, decoder = _decode(chunks)
    assert events == EXPECTED
    assert decoder.pending() == b""


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
@pytest.mark.parametrize("size", [1, 5, 1000])
def test_crlf_and_cr_line_endings(newline: bytes, size: int) -> None:
    stream = STREAM.replace(b"\n", newline)
    chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
    events, decoder = _decode(chunks)
    assert events == EXPECTED
    assert decoder.pending() == b""


def test_raw_bytes_are_the_wire_bytes_for_lf_streams() -> None:
    decoder = SSEDecoder()
    raw = b"".join(e.raw for e in decoder.feed(STREAM))
    assert raw == STREAM.replace(b": a comment line\n\n", b": a comment line\n\n")
    assert b"".join(e.raw for e in SSEDecoder().feed(STREAM)) == STREAM


def test_an_unfinished_event_is_held_and_reported() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"partial": ') == []
    assert decoder.pending() == b'data: {"partial": '
    assert [e.data for e in decoder.feed(b"1}\n\n")] == [b'{"partial": 1}']


def test_a_split_utf8_sequence_is_not_decoded_early() -> None:
    text = "data: héllo ✓\n\n".encode()
    events, _ = _decode([text[:8], text[8:15], text[15:]])
    assert events == [(None, "héllo ✓".encode())]


def test_done_marker_and_encoding() -> None:
    (event,) = SSEDecoder().feed(b"data: [DONE]\n\n")
    assert event.is_done
    assert encode_json({"error": {"code": "x"}}) == b'data: {"error":{"code":"x"}}\n\n'
