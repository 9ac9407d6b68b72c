"""Firewall policies: a validated document of rules deciding allow or deny per `Subject`.

Pure and I/O-free apart from reading the shipped presets once. The document schema is
described field by field in ``policies/firewall/README.md``.

A rule matches a subject iff ALL of its present matchers hold:

- its points: hosts/except_hosts make a rule an egress rule; args/invalid_arguments a call
  rule (history_call, response_call); tools/except_tools a tool rule (tool_definition and
  calls); mcp_servers/mcp_urls alone an mcp_server rule, but with tools or args they match
  the tools of those servers. ``points`` may only narrow that set. A rule with no matcher
  matches every subject.
- tools: the subject's tool matches a glob; except_tools: it matches none (no tool at
  all matches no glob). mcp_servers / mcp_urls: the server label / URL matches a glob.
- hosts: the host matches a pattern; except_hosts: it matches none. IPs only compare with
  IPs and CIDRs, names with names and ``*.suffix`` (never the apex); ``*`` matches all.
- args: each constraint's path exists in the parsed arguments and its checks hold.
- invalid_arguments: the call's arguments were not valid JSON.

Combining: first-match takes the first matching rule; deny-overrides the first matching
deny, else the first matching allow. If no rule decides, a call with invalid arguments
gets the policy's ``invalid_arguments`` effect (rule id "invalid_arguments"), anything
else its ``default`` (rule id None).

Arguments that are not valid JSON cannot be inspected (no hosts, no args), so an allow
rule only vouches for them if it says ``invalid_arguments: true``; other allow rules are
skipped for such calls while deny rules still apply. Likewise a deny rule whose argument
pattern times out counts as matching: an unknown answer fails closed.

Speed: rules are partitioned by point, and per (point, tool, server, url, host) the rules
whose non-argument matchers hold are memoised (with the decision itself when none of them
reads arguments), so a repeated tool or host costs one dict lookup.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from relay.firewall.matchers import MISSING, Constraint, GlobSet, HostSet, PolicyError
from relay.firewall.subjects import CALL_POINTS, POINTS, Point, Subject
from relay.store.base import FirewallPolicyRecord

__all__ = [
    "MODES", "Decision", "Effect", "Mode", "Policy", "PolicyError", "Rule", "applied",
    "fail_closed_policy", "load_policy", "preset_info", "preset_names", "validate_document",
]  # fmt: skip

Effect = Literal["allow", "deny"]
Mode = Literal["shadow", "enforce"]
Combining = Literal["first-match", "deny-overrides"]
MODES: tuple[Mode, ...] = ("shadow", "enforce")
EFFECTS: tuple[Effect, ...] = ("allow", "deny")
COMBINING: tuple[Combining, ...] = ("first-match", "deny-overrides")
PRESET_DIRECTORY = Path(__file__).resolve().parents[2] / "policies" / "firewall" / "presets"
CACHE_SIZE = 4096
TOOL_POINTS: frozenset[Point] = frozenset({"tool_definition", *CALL_POINTS})
_ID = re.compile(r"[A-Za-z0-9_.:-]+")
_DOC_KEYS = ("schema", "default", "combining", "invalid_arguments", "rules")
_GLOB_FIELDS = ("tools", "except_tools", "mcp_servers", "mcp_urls")
_HOST_FIELDS = ("hosts", "except_hosts")
_MATCHERS = frozenset({*_GLOB_FIELDS, *_HOST_FIELDS, "args", "invalid_arguments"})
_RULE_KEYS = frozenset({"id", "effect", "description", "points", *_MATCHERS})
_PRESET_FILE_KEYS = frozenset({"name", "description", "params", "rules", "examples"})


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Effect
    rule_id: str | None


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    effect: Effect
    points: frozenset[Point]
    description: str = ""
    tools: GlobSet | None = None
    except_tools: GlobSet | None = None
    mcp_servers: GlobSet | None = None
    mcp_urls: GlobSet | None = None
    hosts: HostSet | None = None
    except_hosts: HostSet | None = None
    args: tuple[Constraint, ...] = ()
    invalid_arguments: bool = False
    decision: Decision = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "decision", Decision(self.effect, self.id))

    @property
    def reads_arguments(self) -> bool:
        return bool(self.args) or self.invalid_arguments

    def static_match(self, s: Subject) -> bool:
        """The matchers that depend only on the cache key (not on arguments)."""
        return (
            (self.tools is None or self.tools.matches(s.tool))
            and (self.except_tools is None or not self.except_tools.matches(s.tool))
            and (self.mcp_servers is None or self.mcp_servers.matches(s.server_label))
            and (self.mcp_urls is None or self.mcp_urls.matches(s.server_url))
            and (self.hosts is None or self.hosts.matches(s.host))
            and (self.except_hosts is None or not self.except_hosts.matches(s.host))
        )

    def argument_match(self, s: Subject, values: dict[str, Any]) -> bool:
        """The matchers that read arguments; `values` memoises paths across rules."""
        if self.invalid_arguments:
            return s.arguments_invalid
        if s.arguments_invalid:
            # Uninspectable arguments: no args rule matches, and no plain allow vouches.
            return not self.args and self.effect == "deny"
        for constraint in self.args:
            value = values.get(constraint.path, values)
            if value is values:
                value = values[constraint.path] = constraint.resolve(s.arguments)
            try:
                if value is MISSING or not constraint.check(value):
                    return False
            except TimeoutError:
                return self.effect == "deny"
        return True


@dataclass(frozen=True, slots=True)
class _Entry:
    rules: tuple[Rule, ...]  # the point's rules whose static matchers hold
    decision: Decision | None  # when no rule reads arguments: the answer for valid calls


@dataclass(frozen=True, eq=False)
class Policy:
    id: str
    workspace_id: str
    name: str
    mode: Mode
    source: str
    document: dict[str, Any]
    rules: tuple[Rule, ...]
    default: Effect = "allow"
    combining: Combining = "first-match"
    invalid_arguments: Effect = "deny"
    _by_point: dict[Point, tuple[Rule, ...]] = field(init=False, repr=False)
    _cache: dict[tuple[Any, ...], _Entry] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_point = {p: tuple(r for r in self.rules if p in r.points) for p in POINTS}
        object.__setattr__(self, "_by_point", by_point)
        object.__setattr__(self, "_cache", {})

    def decide(self, subject: Subject) -> Decision:
        s = subject
        key = (s.point, s.tool, s.server_label, s.server_url, s.host)
        entry = self._cache.get(key)
        if entry is None:
            rules = tuple(r for r in self._by_point.get(s.point, ()) if r.static_match(s))
            valid = None if any(r.reads_arguments for r in rules) else self._pick(rules, None)
            entry = _Entry(rules, valid)
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = entry
        if entry.decision is not None and not s.arguments_invalid:
            return entry.decision
        return self._pick(entry.rules, s)

    def _pick(self, rules: tuple[Rule, ...], subject: Subject | None) -> Decision:
        """Combine; subject None means a subject whose arguments no rule reads."""
        first_allow: Rule | None = None
        values: dict[str, Any] = {}
        for rule in rules:
            if subject is not None and not rule.argument_match(subject, values):
                continue
            if rule.effect == "deny" or self.combining == "first-match":
                return rule.decision
            if first_allow is None:
                first_allow = rule
        if first_allow is not None:
            return first_allow.decision
        if subject is not None and subject.arguments_invalid:
            return Decision(self.invalid_arguments, "invalid_arguments")
        return Decision(self.default, None)


def applied(verdict: Effect, mode: Mode) -> tuple[str, bool]:
    """(outcome, would_have) of a verdict under a mode: the one place mode is applied."""
    if mode == "shadow":
        return "allowed", verdict == "deny"
    return ("denied" if verdict == "deny" else "allowed"), False


def validate_document(raw: Any) -> dict[str, Any]:
    """The document with defaults filled in (presets kept as references), or PolicyError."""
    return _compile(raw)[0]


def load_policy(
    document: Any, *, id: str, workspace_id: str, name: str, mode: str, source: str = "user"
) -> Policy:
    if mode not in MODES:
        raise PolicyError(f"mode: {mode!r} is not shadow or enforce")
    doc, rules = _compile(document)
    return Policy(id, workspace_id, name, mode, source, doc, rules,
                  doc["default"], doc["combining"], doc["invalid_arguments"])  # fmt: skip


def fail_closed_policy(id: str, workspace_id: str, name: str, source: str) -> Policy:
    """Stands in, enforcing, for a stored policy that no longer parses: denies everything."""
    document = {"schema": 1, "default": "deny", "rules": [{"id": "fail-closed", "effect": "deny"}]}
    return load_policy(document, id=id, workspace_id=workspace_id, name=name, mode="enforce",
                       source=source)  # fmt: skip


def _compile(raw: Any) -> tuple[dict[str, Any], tuple[Rule, ...]]:
    if not isinstance(raw, dict):
        raise PolicyError("policy: must be an object")
    unknown = sorted(set(raw) - set(_DOC_KEYS), key=str)
    if unknown:
        raise PolicyError(f"{unknown[0]}: unknown field")
    schema = raw.get("schema")
    if "schema" not in raw:
        raise PolicyError("schema: required (use 1)")
    if schema != 1 or isinstance(schema, bool) or not isinstance(schema, int):
        raise PolicyError(f"schema: {schema!r} is not supported (only 1)")
    doc: dict[str, Any] = {"schema": 1}
    for key, allowed, fallback in (
        ("default", EFFECTS, "allow"),
        ("combining", COMBINING, "first-match"),
        ("invalid_arguments", EFFECTS, "deny"),
    ):
        value = raw.get(key, fallback)
        if value not in allowed:
            raise PolicyError(f"{key}: {value!r} must be one of {', '.join(allowed)}")
        doc[key] = value
    items = raw.get("rules", [])
    if not isinstance(items, list):
        raise PolicyError("rules: must be an array")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"rules[{i}]"
        if not isinstance(item, dict):
            raise PolicyError(f"{where}: must be an object")
        for rule in _expand(item, where) if "preset" in item else [_rule(item, where)]:
            if rule.id in seen:
                raise PolicyError(f"{where}.id: duplicate rule id {rule.id!r}")
            seen.add(rule.id)
            rules.append(rule)
    doc["rules"] = _copy(items)
    return doc, tuple(rules)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _rule(item: dict[str, Any], where: str) -> Rule:
    unknown = sorted(set(item) - _RULE_KEYS, key=str)
    if unknown:
        raise PolicyError(f"{where}: unknown field {unknown[0]!r}")
    rule_id = _check_id(item.get("id"), f"{where}.id")
    effect = item.get("effect")
    if effect not in EFFECTS:
        raise PolicyError(f"{where}.effect: must be allow or deny")
    description = item.get("description", "")
    if not isinstance(description, str):
        raise PolicyError(f"{where}.description: must be a string")
    globs = {k: GlobSet.parse(item[k], f"{where}.{k}") for k in _GLOB_FIELDS if k in item}
    hosts = {k: HostSet.parse(item[k], f"{where}.{k}") for k in _HOST_FIELDS if k in item}
    args: tuple[Constraint, ...] = ()
    if "args" in item:
        raw_args = item["args"]
        if not isinstance(raw_args, list) or not raw_args:
            raise PolicyError(f"{where}.args: must be a non-empty array of constraints")
        args = tuple(Constraint.parse(c, f"{where}.args[{j}]") for j, c in enumerate(raw_args))
    if "invalid_arguments" in item and item["invalid_arguments"] is not True:
        raise PolicyError(f"{where}.invalid_arguments: must be true (omit it otherwise)")
    if args and "invalid_arguments" in item:
        raise PolicyError(f"{where}: args and invalid_arguments never hold together")
    points = _points(item, where)
    return Rule(
        rule_id, effect, points, description, globs.get("tools"), globs.get("except_tools"),
        globs.get("mcp_servers"), globs.get("mcp_urls"), hosts.get("hosts"),
        hosts.get("except_hosts"), args, "invalid_arguments" in item,
    )  # fmt: skip


def _check_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise PolicyError(f"{where}: must be a non-empty string of A-Z a-z 0-9 _ . : -")
    return value


def _reach(keys: set[str], where: str) -> frozenset[Point]:
    """The points a rule's matchers can apply to (see the module docstring)."""
    reads_arguments = bool(keys & {"args", "invalid_arguments"})
    if keys & set(_HOST_FIELDS):
        if reads_arguments:
            raise PolicyError(f"{where}: hosts (egress) and args (calls) never hold together")
        return frozenset({"egress"})
    if reads_arguments:
        return CALL_POINTS
    if keys & {"tools", "except_tools"}:
        return TOOL_POINTS
    if keys & {"mcp_servers", "mcp_urls"}:
        return frozenset({"mcp_server"})
    return frozenset(POINTS)


def _points(item: dict[str, Any], where: str) -> frozenset[Point]:
    reach = _reach(set(item) & _MATCHERS, where)
    if "points" not in item:
        return reach
    raw = item["points"]
    if not isinstance(raw, list) or not raw:
        raise PolicyError(f"{where}.points: must be a non-empty array of points")
    for j, point in enumerate(raw):
        if point not in POINTS:
            raise PolicyError(f"{where}.points[{j}]: {point!r} is not one of {', '.join(POINTS)}")
        if point not in reach:
            raise PolicyError(f"{where}.points[{j}]: this rule's matchers never apply at "
                              f"{point} (only at {', '.join(sorted(reach))})")  # fmt: skip
    return frozenset(raw)


# -- presets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    params: dict[str, dict[str, Any]]  # name -> {kind: tools|hosts, required, description}
    rules: tuple[dict[str, Any], ...]  # templates; "$param" values are substituted
    examples: tuple[dict[str, Any], ...] = ()


def _expand(item: dict[str, Any], where: str) -> list[Rule]:
    """A preset reference as ordinary rules, its params checked where the user wrote them."""
    presets = _presets()
    name = item["preset"]
    if not isinstance(name, str) or name not in presets:
        raise PolicyError(f"{where}.preset: unknown preset {name!r} "
                          f"(known: {', '.join(sorted(presets))})")  # fmt: skip
    preset = presets[name]
    unknown = sorted(set(item) - {"preset", "id", "description"} - set(preset.params), key=str)
    if unknown:
        raise PolicyError(f"{where}: unknown field {unknown[0]!r} for preset {name} "
                          f"(params: {', '.join(preset.params) or 'none'})")  # fmt: skip
    base = _check_id(item.get("id", name), f"{where}.id")
    values: dict[str, Any] = {}
    for param, spec in preset.params.items():
        if param in item:
            parse = GlobSet.parse if spec["kind"] == "tools" else HostSet.parse
            parse(item[param], f"{where}.{param}")
            values[param] = item[param]
        elif spec["required"]:
            raise PolicyError(f"{where}.{param}: required by preset {name}")
    rules = []
    for template in preset.rules:
        body = _fill(template, values)
        body["id"] = base if len(preset.rules) == 1 else f"{base}.{template['suffix']}"
        if "description" in item:
            body["description"] = item["description"]
        rules.append(_rule(body, f"{where} (preset {name})"))
    return rules


def _fill(template: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Substitute "$param" values; an absent optional param drops its field."""
    out: dict[str, Any] = {}
    for key, value in template.items():
        if key == "suffix":
            continue
        if isinstance(value, str) and value.startswith("$"):
            if value[1:] in values:
                out[key] = values[value[1:]]
        else:
            out[key] = value
    return out


@functools.cache
def _presets() -> dict[str, Preset]:
    return load_presets(PRESET_DIRECTORY)


def load_presets(directory: Path) -> dict[str, Preset]:
    """Every ``*.toml`` preset in a directory, each template checked by compiling it."""
    presets: dict[str, Preset] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{path}: invalid TOML: {exc}") from None
        unknown = sorted(set(data) - _PRESET_FILE_KEYS)
        if unknown or data.get("name") != path.stem:
            raise PolicyError(f"{path}: needs name = {path.stem!r} and only "
                              f"{', '.join(sorted(_PRESET_FILE_KEYS))}")  # fmt: skip
        params = data.get("params", {})
        for param, spec in params.items():
            extra = set(spec) - {"kind", "required", "description"} if isinstance(spec, dict) else 1
            if extra or spec.get("kind") not in ("tools", "hosts"):
                raise PolicyError(f"{path}: params.{param}: needs kind = tools or hosts")
            spec.setdefault("required", False)
            spec.setdefault("description", "")
        templates = data.get("rules", [])
        if not templates or (len(templates) > 1 and not all("suffix" in t for t in templates)):
            raise PolicyError(f"{path}: rules: one or more, each with a suffix if several")
        samples = {p: ["*"] for p in params}
        for i, template in enumerate(templates):
            _rule({**_fill(template, samples), "id": "template"}, f"{path}: rules[{i}]")
        presets[path.stem] = Preset(path.stem, str(data.get("description", "")), params,
                                    tuple(templates), tuple(data.get("examples", [])))  # fmt: skip
    return presets


def preset_names() -> list[str]:
    return sorted(_presets())


def preset_info() -> list[dict[str, Any]]:
    """Name, description and params of each shipped preset, for the admin API and docs."""
    return [
        {"name": p.name, "description": p.description, "params": _copy(p.params)}
        for p in sorted(_presets().values(), key=lambda p: p.name)
    ]


def policy_view(p: FirewallPolicyRecord) -> dict[str, Any]:
    """A stored policy as the CLI and the admin API show it (its document inline)."""
    return {"id": p.id, "workspace_id": p.workspace_id, "name": p.name, "mode": p.mode,
            **p.document, "source": p.source, "created_at": p.created_at,
            "updated_at": p.updated_at}
