"""Guardrail objects: rules (detectors or categories → action, on input/output/both) and a
mode; parsed and validated once, then asked per finding which rule applies.

When several rules match one finding the strictest action wins (block > mask > flag),
ties going to the rule listed first, so adding a broad `flag` rule can never weaken a
narrower `block`.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from relay.store.base import GuardrailRecord

Action = Literal["flag", "mask", "block"]
Stage = Literal["input", "output"]
Mode = Literal["observe", "enforce"]
ACTIONS: tuple[Action, ...] = ("flag", "mask", "block")
MODES: tuple[Mode, ...] = ("observe", "enforce")
_STRICTNESS = {"flag": 0, "mask": 1, "block": 2}
_RULE_KEYS = frozenset({"id", "detectors", "categories", "action", "on"})


class GuardrailRuleError(ValueError):
    """A rule is malformed; the message names the rule and field."""


@dataclass(frozen=True)
class Rule:
    id: str
    detectors: frozenset[str]
    categories: frozenset[str]
    action: Action
    stages: frozenset[Stage]

    def matches(self, detector: str, category: str, stage: Stage) -> bool:
        return stage in self.stages and (
            detector in self.detectors or category in self.categories
        )

    def as_dict(self) -> dict[str, Any]:
        on = "both" if len(self.stages) == 2 else next(iter(self.stages))
        out: dict[str, Any] = {"id": self.id, "action": self.action, "on": on}
        if self.detectors:
            out["detectors"] = sorted(self.detectors)
        if self.categories:
            out["categories"] = sorted(self.categories)
        return out


@dataclass(frozen=True)
class Guardrail:
    id: str
    workspace_id: str
    name: str
    mode: Mode
    rules: tuple[Rule, ...]
    is_default: bool = False
    source: str = "user"

    def rule_for(self, detector: str, category: str, stage: Stage) -> Rule | None:
        best: Rule | None = None
        for rule in self.rules:
            if rule.matches(detector, category, stage) and (
                best is None or _STRICTNESS[rule.action] > _STRICTNESS[best.action]
            ):
                best = rule
        return best

    def covers(self, stage: Stage) -> bool:
        return any(stage in rule.stages for rule in self.rules)

    def enforces_on(self, stage: Stage) -> bool:
        """True when this guardrail would change or stop traffic at this stage."""
        return self.mode == "enforce" and any(
            stage in r.stages and r.action != "flag" for r in self.rules
        )


@dataclass(frozen=True)
class GuardrailSet:
    """Every guardrail that applies to one request: the key's own (or its workspace's
    default) and each installed compliance pack's, which evaluate all of the workspace's
    traffic. Each records its own evidence; the strictest enforced action applies."""

    members: tuple[Guardrail, ...]

    def covers(self, stage: Stage) -> bool:
        return stage in self._covered

    @functools.cached_property
    def _covered(self) -> frozenset[str]:
        # Asked twice per request; the set (cached per key by AccessControl) never changes.
        return frozenset(s for s in ("input", "output") if any(g.covers(s) for g in self.members))

    def enforces_on(self, stage: Stage) -> bool:
        return any(g.enforces_on(stage) for g in self.members)

    @property
    def holds_output(self) -> bool:
        """Streamed output goes through the hold-back (else it is scanned at the end)."""
        return any(g.mode == "enforce" and g.covers("output") for g in self.members)


def parse_rules(
    raw: Any, known_detectors: Collection[str], categories: Collection[str] = ("pii", "secret")
) -> tuple[Rule, ...]:
    """Rules from their JSON form; every error names the rule (by id or index) and field."""
    if not isinstance(raw, list) or not raw:
        raise GuardrailRuleError("rules: must be a non-empty array of rule objects")
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"rules[{index}]"
        if not isinstance(item, dict):
            raise GuardrailRuleError(f"{where}: must be an object")
        unknown = sorted(set(item) - _RULE_KEYS)
        if unknown:
            raise GuardrailRuleError(f"{where}: unknown field {unknown[0]!r}")
        rule_id = item.get("id")
        if not isinstance(rule_id, str) or not rule_id:
            raise GuardrailRuleError(f"{where}.id: must be a non-empty string")
        if rule_id in seen:
            raise GuardrailRuleError(f"{where}.id: duplicate rule id {rule_id!r}")
        seen.add(rule_id)
        detectors = _names(item.get("detectors", []), f"{where}.detectors", known_detectors)
        cats = _names(item.get("categories", []), f"{where}.categories", categories)
        if not detectors and not cats:
            raise GuardrailRuleError(f"{where}: name at least one detector or category")
        action = item.get("action")
        if action not in ACTIONS:
            raise GuardrailRuleError(f"{where}.action: must be one of {', '.join(ACTIONS)}")
        on = item.get("on", "both")
        stages: dict[str, frozenset[Stage]] = {
            "input": frozenset({"input"}),
            "output": frozenset({"output"}),
            "both": frozenset({"input", "output"}),
        }
        if on not in stages:
            raise GuardrailRuleError(f"{where}.on: must be input, output or both")
        rules.append(Rule(rule_id, detectors, cats, action, stages[on]))
    return tuple(rules)


def _names(raw: Any, where: str, allowed: Collection[str]) -> frozenset[str]:
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise GuardrailRuleError(f"{where}: must be an array of strings")
    for name in raw:
        if name not in allowed:
            raise GuardrailRuleError(f"{where}: unknown name {name!r}")
    return frozenset(raw)


def applied(action: Action, mode: Mode) -> tuple[str, bool]:
    """(outcome, would_have) of a verdict under a mode: the one place mode is applied."""
    if mode == "observe":
        return "flagged", action != "flag"
    return {"flag": "flagged", "mask": "masked", "block": "blocked"}[action], False


def guardrail_from_record(record: GuardrailRecord, known_detectors: Collection[str]) -> Guardrail:
    if record.mode not in MODES:
        raise GuardrailRuleError(f"mode: {record.mode!r} is not observe or enforce")
    return Guardrail(
        record.id, record.workspace_id, record.name, record.mode,
        parse_rules(record.rules, known_detectors), record.is_default, record.source,
    )


def fail_closed_guardrail(record: GuardrailRecord) -> Guardrail:
    everything = Rule("fail-closed", frozenset(), frozenset({"pii", "secret"}), "block",
                      frozenset({"input", "output"}))
    return Guardrail(record.id, record.workspace_id, record.name, "enforce", (everything,),
                     record.is_default, record.source)


def guardrail_view(g: GuardrailRecord) -> dict[str, Any]:
    """A stored guardrail as the CLI and the admin API show it."""
    return {"id": g.id, "workspace_id": g.workspace_id, "name": g.name, "mode": g.mode,
            "rules": g.rules, "is_default": g.is_default, "source": g.source,
            "created_at": g.created_at, "updated_at": g.updated_at}
