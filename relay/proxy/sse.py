"""Sans-I/O Server-Sent Events codec: bytes in, events out; events in, bytes out.

Rules of this file:
- `SSEDecoder.feed(chunk)` returns every event completed by the chunk and keeps the rest;
  an event ends at a blank line. Each event keeps its `raw` bytes so the relay forwards
  exactly what the upstream sent when nothing needs changing.
- Line endings LF, CRLF and CR are all accepted (the SSE grammar allows each). A chunk
  holding a CR is normalised to LF before splitting (so `raw` may then differ from the
  wire bytes in line endings only); a CR that ends a chunk counts as a line end at once,
  and an LF opening the next chunk is then its CRLF partner and is skipped.
- A chunk boundary may fall anywhere, including inside a CRLF pair or a UTF-8 sequence;
  nothing is decoded to text here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

DONE = b"[DONE]"
_UNPARSED: Any = object()


@dataclass(slots=True)
class SSEEvent:
    raw: bytes  # the whole event including its terminating blank line
    data: bytes  # data lines joined with b"\n"; b"" when the event has none
    event: bytes | None = None  # the `event:` field, when present
    # `data` parsed as JSON, once for all the filters that read it (see json()).
    _parsed: Any = field(default=_UNPARSED, repr=False, compare=False)

    @property
    def is_done(self) -> bool:
        return self.data == DONE

    def json(self) -> Any:
        """The data as JSON, parsed on first use (orjson.JSONDecodeError if it is not).
        Filters that change the document in place call set_json to re-encode it."""
        if self._parsed is _UNPARSED:
            self._parsed = orjson.loads(self.data)
        return self._parsed

    def set_json(self, document: Any) -> None:
        """Re-encode the event from `document` (the one json() gave, or a new one)."""
        self.set_data(orjson.dumps(document))
        self._parsed = document

    def set_data(self, data: bytes) -> None:
        self.data = data
        self.raw = encode_data(data)
        self._parsed = _UNPARSED


def _parse(block: bytes) -> SSEEvent:
    data_lines: list[bytes] = []
    event_name: bytes | None = None
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data_lines.append(value)
        elif name == b"event":
            event_name = value
    return SSEEvent(raw=block + b"\n\n", data=b"\n".join(data_lines), event=event_name)


class SSEDecoder:
    __slots__ = ("_buffer", "_skip_lf")

    def __init__(self) -> None:
        self._buffer = b""
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._skip_lf and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF whose CR ended the previous chunk
        self._skip_lf = False
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            block = buffer[start:end]
            start = end + 2
            if block.strip(b"\n"):
                events.append(_parse(block.lstrip(b"\n")))
        self._buffer = buffer[start:]
        return events

    def pending(self) -> bytes:
        """Bytes of an event that has not ended yet (non-empty at EOF means a cut stream)."""
        return self._buffer.strip(b"\r\n")


def encode_data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def encode_json(obj: object) -> bytes:
    return encode_data(orjson.dumps(obj))
