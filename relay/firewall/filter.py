"""FirewallFilter: every workspace firewall policy decides every subject; deny in enforce.

Each policy of the key's workspace decides each subject (inspect.py) on its own and each
decision becomes an Events-feed entry; the exchange is denied when an `enforce` policy
denies any subject (`shadow` policies only record what they would have done). The
filter runs first on both sides of the chain, so it decides on the original arguments,
before the guardrail masks anything, and its deny wins.

- Request: denied → 400 firewall_blocked before the upstream call and before metering.
- Whole answer: denied → 400 firewall_blocked instead of the answer, usage refunded.
- Streamed chat answer: tool-call deltas are assembled per call; while an enforcing
  policy applies they are held back and released as one delta per call when the choice
  finishes, after the decision, so no part of a denied call reaches the client (the
  stream then ends with one SSE error event). Shadow policies see the same assembled
  calls and the deltas pass untouched. Streamed Responses are decided (shadow) on their
  closing `response.completed` event; other streamed routes under an enforcing policy
  are refused rather than relayed unchecked.

Evidence: one event per decision a rule made and per denial (default and invalid
arguments included); the subjects a policy allowed by its default effect are listed in
one event per policy and stage (`decisions`, `count`), so offering the same 20 tools on
every request costs one row, not twenty. Events store the tool, the host (secrets hidden
in a hostname masked) and the arguments with every guardrail detector finding replaced
by its detector's name, never raw argument values.
"""

from __future__ import annotations

from typing import Any

import orjson

from relay.errors import FirewallBlocked, InvalidRequest
from relay.evidence import EvidenceEvent
from relay.firewall.inspect import StreamedCall, StreamedCalls, request_subjects, response_subjects
from relay.firewall.policy import Policy, applied
from relay.firewall.subjects import Subject
from relay.guardrail.detectors import DetectorSet
from relay.guardrail.scan import scan
from relay.metrics import RelayMetrics
from relay.proxy.access import AccessControl
from relay.proxy.pipeline import CONTINUE, DROP, Exchange, Filter, LocalReply, Prepend, Verdict
from relay.proxy.sse import SSEEvent, encode_data

MAX_EVIDENCE_ARGUMENTS = 2048  # characters of masked arguments kept per call event
MAX_SCANNED_ARGUMENTS = 65536  # longer arguments are not kept in evidence at all
_STREAMED_ROUTE = "chat_completions"
_HOST_CACHE_SIZE = 4096


class FirewallFilter(Filter):
    name = "firewall"

    def __init__(
        self, access: AccessControl, detectors: DetectorSet, metrics: RelayMetrics
    ) -> None:
        self._access = access
        self._detectors = detectors
        self._decisions = metrics.firewall_decisions
        self._masked_hosts: dict[str, str | None] = {}  # hosts recur; scanning them need not

    def decode_request(self, x: Exchange) -> Verdict:
        policies = self._access.policies_for(x.key)
        if not policies:
            return CONTINUE
        x.metadata["firewall"] = policies
        if x.stream and x.route != _STREAMED_ROUTE and _enforcing(policies):
            return LocalReply(InvalidRequest(
                "the workspace firewall enforces, and streamed tool calls of this route are "
                "not inspected; send the request without stream",
                param="stream", code="firewall_stream_unsupported"))
        if x.body is not None and self._denied(x, policies, request_subjects(x.body)):
            return LocalReply(FirewallBlocked(
                "the request was denied by the workspace firewall (a tool, MCP server or "
                "host it may not use); see the Events feed for this request id"))
        return CONTINUE

    def encode_response(self, x: Exchange) -> Verdict:
        policies: tuple[Policy, ...] | None = x.metadata.get("firewall")
        if policies and self._denied(x, policies, response_subjects(x.response)):
            return self._deny_answer(x)
        return CONTINUE

    # ---- streams -------------------------------------------------------------------

    def encode_chunk(self, x: Exchange, event: SSEEvent) -> Verdict:
        policies: tuple[Policy, ...] | None = x.metadata.get("firewall")
        if not policies:
            return CONTINUE
        if x.route == "responses":
            return self._responses_event(x, policies, event)
        if x.route != _STREAMED_ROUTE:
            return CONTINUE
        calls: StreamedCalls = x.metadata.setdefault("firewall_calls", StreamedCalls())
        if event.is_done:
            return self._release(x, policies, calls.take())
        try:
            document = event.json()
        except orjson.JSONDecodeError:
            return CONTINUE
        choices = document.get("choices") if isinstance(document, dict) else None
        if not isinstance(choices, list):
            return CONTINUE
        x.metadata["firewall_head"] = {
            k: document[k] for k in ("id", "object", "created", "model") if k in document}
        hold = _enforcing(policies)
        finished: list[StreamedCall] = []
        changed = False
        for choice in list(choices):
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if not isinstance(delta, dict):
                continue
            index = choice.get("index", 0)
            if calls.feed(index, delta) and hold:
                delta.pop("tool_calls", None)
                delta.pop("function_call", None)
                changed = True
                if not delta and choice.get("finish_reason") is None:
                    choices.remove(choice)
            if choice.get("finish_reason") is not None:
                finished.extend(calls.take(index))
        verdict = self._release(x, policies, finished) if finished else CONTINUE
        if isinstance(verdict, LocalReply):
            return verdict
        if changed:
            if not choices and not document.get("usage"):
                return verdict if isinstance(verdict, Prepend) else DROP
            event.set_json(document)
        return verdict

    def _responses_event(
        self, x: Exchange, policies: tuple[Policy, ...], event: SSEEvent
    ) -> Verdict:
        """Streamed Responses (shadow only: enforcing policies refuse these streams): the
        closing `response.completed` event carries the whole answer; decide on it."""
        if b"response.completed" not in event.data:
            return CONTINUE
        try:
            document = event.json()
        except orjson.JSONDecodeError:
            return CONTINUE
        if isinstance(document, dict) and document.get("type") == "response.completed":
            self._denied(x, policies, response_subjects(document.get("response")))
        return CONTINUE

    def _release(
        self, x: Exchange, policies: tuple[Policy, ...], finished: list[StreamedCall]
    ) -> Verdict:
        """Decide whole calls; under an enforcing policy send them on as new events."""
        subjects = [s for call in finished for s in call.subjects()]
        if subjects and self._denied(x, policies, subjects):
            return self._deny_answer(x)
        if not finished or not _enforcing(policies):
            return CONTINUE
        head = {"object": "chat.completion.chunk", **x.metadata.get("firewall_head", {})}
        events = []
        for call in finished:
            data = orjson.dumps({**head, "choices": [
                {"index": call.choice, "delta": call.delta(), "finish_reason": None}]})
            events.append(SSEEvent(raw=encode_data(data), data=data))
        return Prepend(tuple(events))

    # ---- shared ----------------------------------------------------------------------

    @staticmethod
    def _deny_answer(x: Exchange) -> LocalReply:
        x.metadata["refund"] = True
        return LocalReply(FirewallBlocked(
            "the response was denied by the workspace firewall (a tool call it may not "
            "make); see the Events feed for this request id"))

    def _denied(self, x: Exchange, policies: tuple[Policy, ...], subjects: list[Subject]) -> bool:
        """Every policy decides every subject; evidence for each. True when denied."""
        if not subjects:
            return False
        denied = False
        described: dict[int, dict[str, Any]] = {}
        for policy in policies:
            by_default: list[dict[str, Any]] = []
            for position, subject in enumerate(subjects):
                decision = policy.decide(subject)
                outcome, would_have = applied(decision.verdict, policy.mode)
                denied = denied or outcome == "denied"
                self._decisions.labels(decision.verdict, outcome, policy.mode).inc()
                if decision.rule_id is None and decision.verdict == "allow":
                    by_default.append(self._brief(subject))
                    continue
                where = described.get(position)
                if where is None:
                    where = described[position] = self._subject_fields(subject)
                self._record(x, policy, decision.verdict, outcome, would_have,
                             {"rule_id": decision.rule_id, **where})
            if by_default:
                self._record(x, policy, "allow", "allowed", False, {
                    "rule_id": None, "point": None, "tool": None, "host": None,
                    "count": len(by_default), "decisions": by_default})
        return denied

    @staticmethod
    def _record(x: Exchange, policy: Policy, verdict: str, outcome: str, would_have: bool,
                fields: dict[str, Any]) -> None:
        x.evidence.append(EvidenceEvent(
            workspace_id=policy.workspace_id, plane="firewall", request_id=x.request_id,
            key_id=x.key.id, fields={
                "mode": policy.mode, "verdict": verdict, "outcome": outcome,
                "would_have": would_have, "policy_id": policy.id, **fields}))

    def _brief(self, subject: Subject) -> dict[str, Any]:
        """A subject allowed by the policy's default, as listed in the one event for those
        (names and hosts only: the default did not look at arguments)."""
        return {"point": subject.point, "tool": subject.tool, "host": self._host(subject),
                "path": subject.path}

    def _host(self, subject: Subject) -> str | None:
        # A destination host is the point of the event, so only secrets hidden in it (DNS
        # exfiltration) are masked; an IP literal is not treated as personal data.
        if subject.host is None:
            return None
        name = subject.host.name
        if name not in self._masked_hosts:
            if len(self._masked_hosts) >= _HOST_CACHE_SIZE:
                self._masked_hosts.clear()
            self._masked_hosts[name] = self._mask(name, secrets_only=True)
        return self._masked_hosts[name]

    def _subject_fields(self, subject: Subject) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "point": subject.point, "tool": subject.tool, "host": self._host(subject),
            "location": {"path": subject.path, "source": subject.source},
        }
        if subject.server_label is not None:
            fields["server_label"] = subject.server_label
        if subject.point in ("history_call", "response_call"):
            text = (orjson.dumps(subject.arguments).decode()
                    if not subject.arguments_invalid else None)
            fields["arguments"] = self._mask(text) if text is not None else None
            fields["arguments_invalid"] = subject.arguments_invalid
        return fields

    def _mask(self, text: str, secrets_only: bool = False) -> str | None:
        """The text with every detector finding replaced by [DETECTOR], capped; None for
        text too long to scan here (a cut before scanning could keep part of a value)."""
        if len(text) > MAX_SCANNED_ARGUMENTS:
            return None
        findings = scan(text, self._detectors)
        if secrets_only:
            findings = [f for f in findings if f.category == "secret"]
        for finding in sorted(findings, key=lambda f: -f.start):
            text = text[: finding.start] + f"[{finding.detector.upper()}]" + text[finding.end :]
        if len(text) > MAX_EVIDENCE_ARGUMENTS:
            text = text[:MAX_EVIDENCE_ARGUMENTS] + "…"
        return text


def _enforcing(policies: tuple[Policy, ...]) -> bool:
    return any(p.mode == "enforce" for p in policies)
