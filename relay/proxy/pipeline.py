"""The filter chain every /v1 exchange runs through, named after Envoy's stages.

Rules of this file:
- A filter may implement `decode_request` (before the upstream call), `encode_response`
  (a whole non-streamed answer), `encode_chunk` (one SSE event of a streamed answer) and
  `on_complete` (always, once, however the exchange ended). Each returns a verdict:
  CONTINUE, DROP (encode_chunk only: the event is not sent), Prepend(events)
  (encode_chunk only: send these new events before this one; they pass through the
  filters after this one, in order, before the current event does) or LocalReply(error),
  after which no later filter runs and the error is the answer.
- Decode runs in list order; encode runs in reverse unless the chain is given its own
  encode order (the firewall must see the upstream's answer before the guardrail masks
  it, and deny first on both sides). The chain is built in one function,
  `server.build_chain`.
- Filters record what they did in `exchange.metadata` for later filters, events, tests.
- An exception inside a filter is a LocalReply(InternalError): controls fail closed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from relay.errors import InternalError, RelayError
from relay.proxy.sse import SSEEvent
from relay.store.base import RelayKey

log = logging.getLogger("orca.pipeline")


class Flow(Enum):
    CONTINUE = "continue"
    DROP = "drop"


CONTINUE = Flow.CONTINUE
DROP = Flow.DROP


@dataclass(frozen=True, slots=True)
class LocalReply:
    error: RelayError


@dataclass(frozen=True, slots=True)
class Prepend:
    events: tuple[SSEEvent, ...]


Verdict = Flow | LocalReply | Prepend


@dataclass(slots=True)
class Exchange:
    """One request through the relay (mitmproxy's `flow`)."""

    request_id: str
    route: str
    key: RelayKey
    body: dict[str, Any] | None  # the parsed request body (None for GET)
    stream: bool = False
    body_changed: bool = False  # a filter rewrote `body`: re-serialise before sending
    response: Any = None  # the parsed non-streamed answer
    response_changed: bool = False
    usage_tokens: int = 0
    completed: bool = False  # the upstream answer arrived whole (or the stream ended well)
    metadata: dict[str, Any] = field(default_factory=dict)
    evidence: list[Any] = field(default_factory=list)  # EvidenceEvents, written before replying


class Filter:
    """Base with pass-through defaults: subclasses override only the stages they need."""

    name = "filter"

    def decode_request(self, x: Exchange) -> Verdict:
        return CONTINUE

    def encode_response(self, x: Exchange) -> Verdict:
        return CONTINUE

    def encode_chunk(self, x: Exchange, event: SSEEvent) -> Verdict:
        return CONTINUE

    def on_complete(self, x: Exchange) -> None:
        return None


def _failed(stage: str, f: Filter, exc: Exception) -> LocalReply:
    log.exception("filter %s failed in %s", f.name, stage, exc_info=exc)
    return LocalReply(InternalError(f"the {f.name} control failed; the request was refused"))


def _first_reply(filters: tuple[Filter, ...], stage: str, x: Exchange) -> LocalReply | None:
    for f in filters:
        try:
            verdict = getattr(f, stage)(x)
        except Exception as exc:
            return _failed(stage, f, exc)
        if isinstance(verdict, LocalReply):
            return verdict
    return None


class Chain:
    __slots__ = ("_filters", "_reversed")

    def __init__(self, filters: list[Filter], encode_order: list[Filter] | None = None) -> None:
        self._filters = tuple(filters)
        self._reversed = tuple(reversed(filters) if encode_order is None else encode_order)
        if sorted(map(id, self._reversed)) != sorted(map(id, self._filters)):
            raise ValueError("the encode order must hold the same filters as the decode order")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self._filters)

    def decode_request(self, x: Exchange) -> LocalReply | None:
        return _first_reply(self._filters, "decode_request", x)

    def encode_response(self, x: Exchange) -> LocalReply | None:
        return _first_reply(self._reversed, "encode_response", x)

    def encode_chunk(self, x: Exchange, event: SSEEvent) -> Verdict:
        """CONTINUE (send `event.raw`), DROP or LocalReply; never Prepend."""
        return self._encode_from(0, x, event)

    def _encode_from(self, start: int, x: Exchange, event: SSEEvent) -> Verdict:
        prefix = b""
        for position in range(start, len(self._reversed)):
            f = self._reversed[position]
            try:
                verdict = f.encode_chunk(x, event)
            except Exception as exc:
                return _failed("encode_chunk", f, exc)
            if isinstance(verdict, Prepend):
                for extra in verdict.events:
                    outcome = self._encode_from(position + 1, x, extra)
                    if isinstance(outcome, LocalReply):
                        return outcome
                    if outcome is CONTINUE:
                        prefix += extra.raw
                continue
            if verdict is not CONTINUE:
                if verdict is DROP and prefix:
                    event.raw = prefix
                    return CONTINUE
                return verdict
        if prefix:
            event.raw = prefix + event.raw
        return CONTINUE

    def on_complete(self, x: Exchange) -> None:
        for f in self._filters:
            try:
                f.on_complete(x)
            except Exception:
                log.exception("filter %s failed in on_complete", f.name)

