"""GuardrailFilter: scan what crosses the relay, apply the guardrail's rules, record evidence.

Input (decode_request): every message's content (strings and text parts), names, tool-call
and legacy function-call arguments, and `prompt` / `input` strings. Output
(encode_response): every choice's content, tool-call arguments and completion text.
In enforce mode `mask` rewrites each value to a typed placeholder ([EMAIL_ADDRESS_1]; the
same value gets the same placeholder within a request) and `block` answers 400
guardrail_blocked (an output block refunds the usage). In observe mode nothing changes
and each would-be mask or block is recorded with `would_have`. Every finding a rule
covers becomes an evidence event (a masked snippet and an HMAC, never the value).

Streamed output is not scanned yet: a stream whose guardrail enforces on output is
refused rather than let through unscanned (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from relay.errors import GuardrailBlocked, InvalidRequest
from relay.evidence import EvidenceEvent, masked_snippet, value_hmac
from relay.guardrail.detectors import DetectorSet
from relay.guardrail.policy import Guardrail, Rule, Stage, applied
from relay.guardrail.scan import Finding, scan
from relay.metrics import RelayMetrics
from relay.proxy.access import AccessControl
from relay.proxy.pipeline import CONTINUE, Exchange, Filter, LocalReply, Verdict

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
        self, access: AccessControl, detectors: DetectorSet, metrics: RelayMetrics
    ) -> None:
        self._access = access
        self._detectors = detectors
        self._findings = metrics.guardrail_findings

    def decode_request(self, x: Exchange) -> Verdict:
        guardrail = self._access.guardrail_for(x.key)
        if guardrail is None:
            return CONTINUE
        x.metadata["guardrail"] = guardrail
        if x.stream and guardrail.enforces_on("output"):
            return LocalReply(InvalidRequest(
                "this key's guardrail enforces on output, and streamed output is not "
                "scanned yet; send the request without stream",
                param="stream", code="guardrail_stream_unsupported"))
        if x.body is None or not guardrail.covers("input"):
            return CONTINUE
        if self._inspect(x, guardrail, "input", list(request_slots(x.body))):
            return LocalReply(GuardrailBlocked(
                "the request was blocked by the workspace guardrail (sensitive data in the "
                "prompt); see the Matches feed for this request id"))
        return CONTINUE

    def encode_response(self, x: Exchange) -> Verdict:
        guardrail: Guardrail | None = x.metadata.get("guardrail")
        if guardrail is None or not guardrail.covers("output"):
            return CONTINUE
        if self._inspect(x, guardrail, "output", list(response_slots(x.response))):
            x.metadata["refund"] = True
            return LocalReply(GuardrailBlocked(
                "the response was blocked by the workspace guardrail (sensitive data in the "
                "answer); see the Matches feed for this request id"))
        return CONTINUE

    def _inspect(self, x: Exchange, g: Guardrail, stage: Stage, slots: list[Slot]) -> bool:
        """Scan the slots; record evidence; mask in place. True when the exchange is blocked."""
        hits: list[tuple[Slot, str, Finding, Rule]] = []
        for slot in slots:
            text = slot[0][slot[1]]
            for finding in scan(text, self._detectors):
                rule = g.rule_for(finding.detector, finding.category, stage)
                if rule is not None:
                    hits.append((slot, text, finding, rule))
        if not hits:
            return False
        blocked = g.mode == "enforce" and any(rule.action == "block" for *_, rule in hits)
        key = self._access.hmac_key(g.workspace_id)
        masks: dict[tuple[int, Any], tuple[Slot, str, list[tuple[Finding, str]]]] = {}
        for slot, text, finding, rule in hits:
            outcome, would_have = applied(rule.action, g.mode)
            if blocked and rule.action != "flag":
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
            if outcome == "masked":
                entry = masks.setdefault((id(slot[0]), slot[1]), (slot, text, []))
                entry[2].append((finding, self._placeholder(x, finding, value)))
        for slot, text, replacements in masks.values():
            for finding, placeholder in sorted(replacements, key=lambda r: -r[0].start):
                text = text[: finding.start] + placeholder + text[finding.end :]
            slot[0][slot[1]] = text
            if stage == "input":
                x.body_changed = True
            else:
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
