"""GuardrailFilter: scan what crosses the relay, apply the guardrails' rules, record evidence.

The guardrails of a request are the key's own (or its workspace's default) and every
installed compliance pack's (policy.GuardrailSet): each records its own evidence, and
the strictest action of the enforcing ones applies.

Input (decode_request): every message's content (strings and text parts), names, tool-call
and legacy function-call arguments, and `prompt` / `input` strings. Output
(encode_response): every choice's content, tool-call arguments and completion text.
In enforce mode `mask` rewrites each value to a typed placeholder ([EMAIL_ADDRESS_1]; the
same value gets the same placeholder within a request) and `block` answers 400
guardrail_blocked (an output block refunds the usage). In observe mode nothing changes
and each would-be mask or block is recorded with `would_have`. Every finding a rule
covers becomes an evidence event (a masked snippet and an HMAC, never the value).

Streamed chat output (content and tool-call argument deltas, per choice) goes through a
hold-back (holdback.py) in enforce mode: each chunk carries only what is safe to release,
masked, and a value split across chunks is caught before any part of it leaves; a block
ends the stream with one SSE error event. In observe mode chunks pass untouched and the
assembled texts are scanned when the stream ends. Other streamed routes under a
guardrail that enforces on output are refused rather than relayed unscanned.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from relay.errors import GuardrailBlocked, InvalidRequest
from relay.evidence import EvidenceEvent, masked_snippet, value_hmac
from relay.guardrail.detectors import DetectorSet
from relay.guardrail.holdback import HoldBack
from relay.guardrail.policy import Guardrail, GuardrailSet, Rule, Stage, applied
from relay.guardrail.scan import Finding, scan, scan_many
from relay.guardrail.scan_cache import ScanCache
from relay.metrics import RelayMetrics
from relay.proxy.access import AccessControl
from relay.proxy.pipeline import CONTINUE, DROP, Exchange, Filter, LocalReply, Verdict
from relay.proxy.sse import SSEEvent, encode_data

Slot = tuple[Any, Any, str]  # (container, key, path): container[key] is a text


def request_slots(body: dict[str, Any]) -> Iterator[Slot]:
    for i, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict):
            continue
        yield from _message_slots(message, f"messages[{i}]")
    for name in ("prompt", "input"):
        yield from _text_or_list(body, name, name)


def response_slots(response: Any) -> Iterator[Slot]:
    if not isinstance(response, dict):
        return
    for i, choice in enumerate(response.get("choices") or []):
        if not isinstance(choice, dict):
            continue
        if isinstance(choice.get("message"), dict):
            yield from _message_slots(choice["message"], f"choices[{i}].message")
        if isinstance(choice.get("text"), str):
            yield choice, "text", f"choices[{i}].text"


def _message_slots(message: dict[str, Any], path: str) -> Iterator[Slot]:
    content = message.get("content")
    if isinstance(content, str):
        yield message, "content", f"{path}.content"
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part, "text", f"{path}.content[{j}].text"
    if isinstance(message.get("name"), str):
        yield message, "name", f"{path}.name"
    for j, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            yield function, "arguments", f"{path}.tool_calls[{j}].function.arguments"
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
        yield legacy, "arguments", f"{path}.function_call.arguments"


def _delta_pieces(choice: Any) -> list[tuple[tuple[int, str, int], str]]:
    """The streamed text pieces of one chunk's choice, keyed (choice, kind, tool index)."""
    if not isinstance(choice, dict) or not isinstance(choice.get("delta"), dict):
        return []
    index = choice.get("index", 0)
    delta = choice["delta"]
    pieces: list[tuple[tuple[int, str, int], str]] = []
    if isinstance(delta.get("content"), str):
        pieces.append(((index, "content", 0), delta["content"]))
    for call in delta.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            pieces.append(((index, "tool", call.get("index", 0)), function["arguments"]))
    return pieces


def _set_delta_piece(delta: dict[str, Any], slot: tuple[int, str, int], text: str) -> None:
    if slot[1] == "content":
        delta["content"] = text
        return
    calls = delta.setdefault("tool_calls", [])
    for call in calls:
        if isinstance(call, dict) and call.get("index", 0) == slot[2]:
            call.setdefault("function", {})["arguments"] = text
            return
    calls.append({"index": slot[2], "function": {"arguments": text}})


def _slot_path(slot: tuple[int, str, int]) -> str:
    if slot[1] == "content":
        return f"choices[{slot[0]}].delta.content"
    return f"choices[{slot[0]}].delta.tool_calls[{slot[2]}].function.arguments"


def _text_or_list(body: dict[str, Any], name: str, path: str) -> Iterator[Slot]:
    value = body.get(name)
    if isinstance(value, str):
        yield body, name, path
    elif isinstance(value, list):
        for j, item in enumerate(value):
            if isinstance(item, str):
                yield value, j, f"{path}[{j}]"


class GuardrailFilter(Filter):
    name = "guardrail"

    def __init__(
        self, access: AccessControl, detectors: DetectorSet, metrics: RelayMetrics,
        scan_cache_entries: int = 0,
    ) -> None:
        self._access = access
        self._detectors = detectors
        self._cache = ScanCache(detectors, scan_cache_entries)
        self._findings = metrics.guardrail_findings

    def decode_request(self, x: Exchange) -> Verdict:
        guardrails = self._access.guardrails_for(x.key)
        if guardrails is None:
            return CONTINUE
        x.metadata["guardrails"] = guardrails
        if x.stream and x.route != "chat_completions" and guardrails.enforces_on("output"):
            return LocalReply(InvalidRequest(
                "this key's guardrail enforces on output, and streamed output of this route "
                "is not scanned; send the request without stream",
                param="stream", code="guardrail_stream_unsupported"))
        if x.body is None or not guardrails.covers("input"):
            return CONTINUE
        if self._inspect(x, guardrails, "input", list(request_slots(x.body))):
            return LocalReply(GuardrailBlocked(
                "the request was blocked by the workspace guardrail (sensitive data in the "
                "prompt); see the Matches feed for this request id"))
        return CONTINUE

    def encode_response(self, x: Exchange) -> Verdict:
        guardrails: GuardrailSet | None = x.metadata.get("guardrails")
        if guardrails is None or not guardrails.covers("output"):
            return CONTINUE
        if self._inspect(x, guardrails, "output", list(response_slots(x.response))):
            x.metadata["refund"] = True
            return LocalReply(GuardrailBlocked(
                "the response was blocked by the workspace guardrail (sensitive data in the "
                "answer); see the Matches feed for this request id"))
        return CONTINUE

    # ---- streams -------------------------------------------------------------------

    def encode_chunk(self, x: Exchange, event: SSEEvent) -> Verdict:
        guardrails: GuardrailSet | None = x.metadata.get("guardrails")
        if guardrails is None or not guardrails.covers("output"):
            return CONTINUE
        streams: dict[tuple[int, str, int], Any] = x.metadata.setdefault("streams", {})
        if event.is_done:
            return self._flush(x, guardrails, streams, event)
        try:
            document = event.json()
        except orjson.JSONDecodeError:
            return CONTINUE
        choices = document.get("choices") if isinstance(document, dict) else None
        if not isinstance(choices, list) or not choices:
            return CONTINUE
        if not guardrails.holds_output:
            for choice in choices:
                for slot, piece in _delta_pieces(choice):
                    streams[slot] = streams.get(slot, "") + piece
            return CONTINUE
        keep = False
        for choice in choices:
            verdict = self._release_choice(x, guardrails, streams, choice)
            if isinstance(verdict, LocalReply):
                return verdict
            keep = keep or verdict
        if not keep:
            return DROP
        event.set_json(document)
        return CONTINUE

    def _release_choice(
        self, x: Exchange, g: GuardrailSet, streams: dict[tuple[int, str, int], Any],
        choice: dict[str, Any],
    ) -> bool | LocalReply:
        """Rewrite one choice's delta to what may be released. True if it must be sent."""
        index = choice.get("index", 0)
        final = choice.get("finish_reason") is not None
        delta = choice.setdefault("delta", {})
        if not isinstance(delta, dict):
            return True
        keep = final or any(k not in ("content", "tool_calls") for k in delta)
        pieces = dict(_delta_pieces(choice))
        slots = {s for s in streams if s[0] == index} | set(pieces) if final else set(pieces)
        for slot in sorted(slots):
            hold = streams.get(slot)
            if hold is None:
                hold = streams[slot] = HoldBack(lambda t: scan(t, self._detectors))
            released, findings = hold.feed(pieces.get(slot, ""), final=final)
            masked = self._decide_released(x, g, slot, released, findings)
            if isinstance(masked, LocalReply):
                return masked
            _set_delta_piece(delta, slot, masked)
            keep = keep or bool(masked)
        if "tool_calls" in delta:
            keep = keep or any(len(call) > 2 or call.get("function", {}).get("arguments")
                               for call in delta["tool_calls"] if isinstance(call, dict))
        return keep

    def _decide_released(
        self, x: Exchange, g: GuardrailSet, slot: tuple[int, str, int], text: str,
        findings: list[Finding],
    ) -> str | LocalReply:
        path = _slot_path(slot)
        holder = {"text": text}
        if self._record_many(x, g, "output", [((holder, "text", path), text, findings)]):
            x.metadata["refund"] = True
            return LocalReply(GuardrailBlocked(
                "the response was blocked by the workspace guardrail (sensitive data in the "
                "answer); see the Matches feed for this request id"))
        return holder["text"]

    def _flush(
        self, x: Exchange, g: GuardrailSet, streams: dict[tuple[int, str, int], Any],
        event: SSEEvent,
    ) -> Verdict:
        """At [DONE]: release what is still held (a stream that ended without finish)."""
        if not g.holds_output:
            return CONTINUE
        extra = b""
        for slot, hold in sorted(streams.items()):
            if not hold.held:
                continue
            released, findings = hold.feed("", final=True)
            masked = self._decide_released(x, g, slot, released, findings)
            if isinstance(masked, LocalReply):
                return masked
            delta: dict[str, Any] = {}
            _set_delta_piece(delta, slot, masked)
            extra += encode_data(orjson.dumps(
                {"object": "chat.completion.chunk",
                 "choices": [{"index": slot[0], "delta": delta, "finish_reason": None}]}))
        if extra:
            event.raw = extra + event.raw
        return CONTINUE

    def on_complete(self, x: Exchange) -> None:
        """Observe mode, streams: scan the assembled output once, record what it would do."""
        guardrails: GuardrailSet | None = x.metadata.get("guardrails")
        streams = x.metadata.get("streams")
        if guardrails is None or guardrails.holds_output or not streams:
            return
        texts = {_slot_path(slot): text for slot, text in streams.items()}
        self._inspect(x, guardrails, "output", [(texts, path, path) for path in texts])

    # ---- shared ----------------------------------------------------------------------

    def _inspect(self, x: Exchange, g: GuardrailSet, stage: Stage, slots: list[Slot]) -> bool:
        """Scan the slots; record evidence; mask in place. True when the exchange is blocked."""
        texts = [slot[0][slot[1]] for slot in slots]
        # Requests resend their history; an answer is new text every time.
        if stage == "input":
            findings = self._cache.scan_many(texts, x.key.id)
        else:
            findings = scan_many(texts, self._detectors)
        return self._record_many(x, g, stage, list(zip(slots, texts, findings, strict=True)))

    def _record_many(
        self, x: Exchange, guardrails: GuardrailSet, stage: Stage,
        scanned: list[tuple[Slot, str, list[Finding]]],
    ) -> bool:
        """Apply every guardrail's rules to the findings: evidence, metrics, masks in
        place. True when an enforcing guardrail blocks."""
        hits: list[tuple[Slot, str, Finding, Guardrail, Rule]] = []
        for slot, text, findings in scanned:
            for finding in findings:
                for g in guardrails.members:
                    rule = g.rule_for(finding.detector, finding.category, stage)
                    if rule is not None:
                        hits.append((slot, text, finding, g, rule))
        if not hits:
            return False
        blocked = any(g.mode == "enforce" and rule.action == "block" for *_, g, rule in hits)
        key = self._access.hmac_key(hits[0][3].workspace_id)
        masks: dict[tuple[int, Any], tuple[Slot, str, dict[tuple[int, int], Any]]] = {}
        for slot, text, finding, g, rule in hits:
            outcome, would_have = applied(rule.action, g.mode)
            if blocked and rule.action != "flag" and g.mode == "enforce":
                outcome = "blocked"
            value = text[finding.start : finding.end]
            x.evidence.append(EvidenceEvent(
                workspace_id=g.workspace_id, plane="guardrail", request_id=x.request_id,
                key_id=x.key.id, fields={
                    "mode": g.mode, "verdict": rule.action, "outcome": outcome,
                    "would_have": would_have, "guardrail_id": g.id, "rule_id": rule.id,
                    "detector": finding.detector, "category": finding.category,
                    "location": {"stage": stage, "path": slot[2]},
                    "snippet": masked_snippet(value), "value_hmac": value_hmac(key, value),
                }))
            self._findings.labels(finding.category, rule.action, outcome, g.mode).inc()
            if outcome == "masked":  # one replacement per finding, however many guardrails
                entry = masks.setdefault((id(slot[0]), slot[1]), (slot, text, {}))
                entry[2][(finding.start, finding.end)] = (
                    finding, self._placeholder(x, finding, value))
        for slot, text, replacements in masks.values():
            for finding, placeholder in sorted(replacements.values(),
                                               key=lambda r: -r[0].start):
                text = text[: finding.start] + placeholder + text[finding.end :]
            slot[0][slot[1]] = text
            if stage == "input":
                x.body_changed = True
            elif not x.stream:
                x.response_changed = True
        return blocked

    @staticmethod
    def _placeholder(x: Exchange, finding: Finding, value: str) -> str:
        names: dict[tuple[str, str], str] = x.metadata.setdefault("placeholders", {})
        label = finding.detector.upper()
        known = names.get((label, value))
        if known is None:
            count = sum(1 for (lab, _) in names if lab == label) + 1
            known = names[(label, value)] = f"[{label}_{count}]"
        return known
