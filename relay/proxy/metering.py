"""The metering filter: quota check before the upstream call, usage counted after it.

Streams are metered too: for chat and legacy completions the relay asks the upstream for
the usage chunk (`stream_options.include_usage`) and, when the client did not ask for it,
drops that chunk before the client sees it. A request refused before the upstream call
is never metered; an answer a later control replaces with an error sets
`metadata["refund"]` and its tokens are counted as refunded instead.
"""

from __future__ import annotations

from typing import Any

import orjson

from relay.errors import QuotaExceeded
from relay.metrics import RelayMetrics
from relay.proxy.access import AccessControl
from relay.proxy.pipeline import CONTINUE, DROP, Exchange, Filter, LocalReply, Verdict
from relay.proxy.sse import SSEEvent

USAGE_INJECTABLE = frozenset({"chat_completions", "completions"})
_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")


def tokens_of(usage: Any) -> int:
    """Total tokens of an OpenAI usage object (chat, completions, embeddings, responses)."""
    if not isinstance(usage, dict):
        return 0
    total = usage.get("total_tokens")
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return total
    return sum(
        v
        for name in _USAGE_FIELDS
        if isinstance(v := usage.get(name), int) and not isinstance(v, bool) and v > 0
    )


def usage_in(document: Any) -> Any:
    """The usage object of an answer or stream event: top level, or `response.usage`."""
    if not isinstance(document, dict):
        return None
    usage = document.get("usage")
    if usage is None and isinstance(document.get("response"), dict):
        usage = document["response"].get("usage")
    return usage


def _strip_null_usage(event: SSEEvent) -> None:
    """Remove the `"usage":null` member the upstream adds to every chunk once usage was
    asked for, so a client that did not ask sees the chunks it would have seen.

    Byte-level on purpose (no re-serialisation per chunk): in JSON text a quote that
    follows `,` or `{` is structural, so `,"usage":null` can only be an object member.
    """
    data = event.data.replace(b',"usage":null', b"").replace(b'{"usage":null,', b"{")
    if len(data) != len(event.data):
        event.set_data(data)


class MeteringFilter(Filter):
    name = "metering"

    def __init__(self, access: AccessControl, metrics: RelayMetrics) -> None:
        self._access = access
        self._metrics = metrics

    def decode_request(self, x: Exchange) -> Verdict:
        try:
            self._access.check_quota(x.key)
        except QuotaExceeded as exc:
            self._metrics.quota_rejections.inc()
            return LocalReply(exc)
        if x.stream and x.route in USAGE_INJECTABLE and x.body is not None:
            options = x.body.get("stream_options")
            wants = isinstance(options, dict) and options.get("include_usage") is True
            x.metadata["client_wants_usage"] = wants
            if not wants:
                x.body["stream_options"] = {**(options or {}), "include_usage": True}
                x.body_changed = True
        return CONTINUE

    def encode_chunk(self, x: Exchange, event: SSEEvent) -> Verdict:
        data = event.data
        if b'"usage"' not in data:
            return CONTINUE
        if b'"usage":null' in data:
            if not x.metadata.get("client_wants_usage", True):
                _strip_null_usage(event)
            return CONTINUE
        try:
            document = event.json()
        except orjson.JSONDecodeError:
            return CONTINUE
        usage = usage_in(document)
        if usage is None:
            return CONTINUE
        x.usage_tokens = tokens_of(usage)
        if x.metadata.get("client_wants_usage", True):
            return CONTINUE
        if not document.get("choices"):
            return DROP
        # Usage rode on a chunk that also carries content: keep the content only.
        document.pop("usage", None)
        event.set_json(document)
        return CONTINUE

    def on_complete(self, x: Exchange) -> None:
        # Read here, not in encode_response: a control that replaces the answer stops the
        # encode chain, and its tokens must still be counted (as refunded).
        if x.response is not None and not x.stream:
            x.usage_tokens = tokens_of(usage_in(x.response))
        tokens = x.usage_tokens
        if tokens <= 0:
            return
        if x.metadata.get("refund"):
            self._metrics.tokens.labels("refunded").inc(tokens)
            return
        self._access.meter(x.key, tokens)
        self._metrics.tokens.labels("metered").inc(tokens)
