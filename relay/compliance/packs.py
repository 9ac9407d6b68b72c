"""Compliance packs: one TOML file per framework in ``policies/packs/``, loaded and checked.

A pack declares one guardrail (rules in the shape ``parse_rules`` takes), one firewall
document (what ``validate_document`` takes) and the framework's clauses, each either
mapped to controls (``"guardrail:RULE_ID"`` / ``"firewall:RULE_ID"``) or disclosed as an
organizational gap with the reason. The format is described field by field in
``policies/packs/README.md``.

Pure: the only I/O is reading the pack directory. Every error is a ``PackError`` naming the
file and the field, e.g. ``soc2.toml: clauses[3].controls[1]: no firewall rule 'x'``.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from relay.firewall.policy import PolicyError, validate_document
from relay.guardrail.detectors import default_detector_set
from relay.guardrail.policy import GuardrailRuleError, parse_rules

__all__ = ["PACK_DIRECTORY", "Clause", "Control", "Pack", "PackError", "catalog",
           "load_catalog", "load_pack"]  # fmt: skip

PACK_DIRECTORY = Path(__file__).resolve().parents[2] / "policies" / "packs"
ControlKind = Literal["guardrail", "firewall"]
KINDS: tuple[ControlKind, ...] = ("guardrail", "firewall")
_TOP_KEYS = ("id", "name", "version", "clause_pattern", "description", "guardrail",
             "firewall", "clauses")  # fmt: skip
_SECTION_KEYS = {"guardrail": ("name", "rules"), "firewall": ("name", "document")}
_CLAUSE_KEYS = frozenset({"id", "title", "controls", "organizational"})


class PackError(ValueError):
    """A pack file is invalid; the message names the file and the field at fault."""


@dataclass(frozen=True)
class Control:
    kind: ControlKind
    rule_id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.rule_id}"


@dataclass(frozen=True)
class Clause:
    id: str
    title: str
    controls: tuple[Control, ...]
    organizational: str | None  # the reason a gateway cannot enforce or evidence it

    @property
    def is_gap(self) -> bool:
        return self.organizational is not None


@dataclass(frozen=True)
class Pack:
    id: str
    name: str
    version: str
    description: str
    guardrail_name: str
    guardrail_rules: list[dict[str, Any]]  # as parse_rules normalises them
    firewall_name: str
    firewall_document: dict[str, Any]  # validate_document's output
    clauses: tuple[Clause, ...]

    def rule_ids(self, kind: ControlKind) -> tuple[str, ...]:
        """Ids of the pack's guardrail rules, or of its firewall rules (preset: its id)."""
        if kind == "guardrail":
            return tuple(rule["id"] for rule in self.guardrail_rules)
        return tuple(rule["id"] for rule in self.firewall_document["rules"])


def load_pack(path: Path, known_detectors: Collection[str]) -> Pack:
    """One pack file, fully checked against the detectors and firewall presets."""
    where = path.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PackError(f"{where}: invalid TOML: {exc}") from None
    _check_keys(data, _TOP_KEYS, where, "")
    for key in ("id", "name", "version", "clause_pattern", "description"):
        _string(data[key], f"{where}: {key}")
    if data["id"] != path.stem:
        raise PackError(f"{where}: id: {data['id']!r} must equal the file name {path.stem!r}")
    try:
        pattern = re.compile(data["clause_pattern"])
    except re.error as exc:
        raise PackError(f"{where}: clause_pattern: invalid regular expression: {exc}") from None
    guardrail = _section(data, "guardrail", where)
    firewall = _section(data, "firewall", where)
    try:
        rules = [r.as_dict() for r in parse_rules(guardrail["rules"], known_detectors)]
    except GuardrailRuleError as exc:
        raise PackError(f"{where}: guardrail.{exc}") from None
    if not isinstance(firewall["document"], dict):
        raise PackError(f"{where}: firewall.document: must be a table")
    try:
        document = validate_document(firewall["document"])
    except PolicyError as exc:
        raise PackError(f"{where}: firewall.document.{exc}") from None
    known = {"guardrail": {r["id"] for r in rules},
             "firewall": _firewall_ids(document, where)}  # fmt: skip
    clauses = _clauses(data["clauses"], pattern, known, where)
    return Pack(data["id"], data["name"], data["version"], data["description"],
                guardrail["name"], rules, firewall["name"], document, clauses)  # fmt: skip


def load_catalog(
    directory: Path = PACK_DIRECTORY, known_detectors: Collection[str] | None = None
) -> dict[str, Pack]:
    """Every ``*.toml`` pack in a directory by id; rule ids must be unique across packs."""
    if known_detectors is None:
        known_detectors = [d.id for d in default_detector_set().detectors]
    packs: dict[str, Pack] = {}
    owners: dict[tuple[str, str], str] = {}
    for path in sorted(directory.glob("*.toml")):
        pack = load_pack(path, known_detectors)
        for kind in KINDS:
            for rule_id in pack.rule_ids(kind):
                owner = owners.setdefault((kind, rule_id), path.name)
                if owner != path.name:
                    raise PackError(
                        f"{path.name}: {kind} rule id {rule_id!r} is already "
                        f"used by {owner} (rule ids are unique across packs)"
                    )
        packs[pack.id] = pack
    return packs


@functools.cache
def catalog() -> dict[str, Pack]:
    """The shipped catalog, loaded once per process (treat it as read-only)."""
    return load_catalog()


def _check_keys(data: dict[str, Any], keys: Collection[str], where: str, prefix: str) -> None:
    unknown = sorted(set(data) - set(keys), key=str)
    if unknown:
        raise PackError(f"{where}: {prefix}{unknown[0]}: unknown field")
    for key in keys:
        if key not in data:
            raise PackError(f"{where}: {prefix}{key}: missing field")


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PackError(f"{where}: must be a non-empty string")
    return value


def _section(data: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    section = data[name]
    if not isinstance(section, dict):
        raise PackError(f"{where}: {name}: must be a table")
    _check_keys(section, _SECTION_KEYS[name], where, f"{name}.")
    _string(section["name"], f"{where}: {name}.name")
    return cast(dict[str, Any], section)


def _firewall_ids(document: dict[str, Any], where: str) -> set[str]:
    ids: set[str] = set()
    for i, rule in enumerate(document["rules"]):
        if "preset" in rule and "id" not in rule:
            raise PackError(
                f"{where}: firewall.document.rules[{i}].id: a preset reference "
                "in a pack needs an explicit id"
            )
        ids.add(rule["id"])
    return ids


def _clauses(
    raw: Any, pattern: re.Pattern[str], known: dict[str, set[str]], where: str
) -> tuple[Clause, ...]:
    if not isinstance(raw, list) or not raw:
        raise PackError(f"{where}: clauses: must be a non-empty array of tables")
    clauses: list[Clause] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        at = f"{where}: clauses[{index}]"
        if not isinstance(item, dict):
            raise PackError(f"{at}: must be a table")
        unknown = sorted(set(item) - _CLAUSE_KEYS)
        if unknown:
            raise PackError(f"{at}.{unknown[0]}: unknown field")
        for key in ("id", "title"):
            if key not in item:
                raise PackError(f"{at}.{key}: missing field")
            _string(item[key], f"{at}.{key}")
        clause_id = item["id"]
        if not pattern.fullmatch(clause_id):
            raise PackError(f"{at}.id: unknown clause {clause_id!r} (does not match "
                            "clause_pattern)")  # fmt: skip
        if clause_id in seen:
            raise PackError(f"{at}.id: duplicate clause id {clause_id!r}")
        seen.add(clause_id)
        if ("controls" in item) == ("organizational" in item):
            raise PackError(f"{at}: needs exactly one of controls or organizational")
        if "organizational" in item:
            reason = _string(item["organizational"], f"{at}.organizational")
            clauses.append(Clause(clause_id, item["title"], (), reason))
        else:
            controls = _controls(item["controls"], known, at)
            clauses.append(Clause(clause_id, item["title"], controls, None))
    return tuple(clauses)


def _controls(raw: Any, known: dict[str, set[str]], at: str) -> tuple[Control, ...]:
    if not isinstance(raw, list) or not raw:
        raise PackError(f"{at}.controls: must be a non-empty array of 'kind:rule_id' strings")
    controls: list[Control] = []
    for index, ref in enumerate(raw):
        here = f"{at}.controls[{index}]"
        if not isinstance(ref, str) or ":" not in ref:
            raise PackError(f"{here}: must be a string 'guardrail:RULE_ID' or 'firewall:RULE_ID'")
        kind, _, rule_id = ref.partition(":")
        if kind not in KINDS:
            raise PackError(f"{here}: kind {kind!r} is not guardrail or firewall")
        if rule_id not in known[kind]:
            raise PackError(f"{here}: no {kind} rule {rule_id!r}")
        control = Control(kind, rule_id)
        if control in controls:
            raise PackError(f"{here}: duplicate control {ref!r}")
        controls.append(control)
    return tuple(controls)
