"""The evidence document a compliance report is built from, and its canonical bytes.

Everything a report claims lives in one JSON document; `canonical()` turns it into RFC
8785 (JCS) bytes, whose SHA-256 is the evidence hash the signed statement carries. The
same inputs give the same bytes, so regenerating with the same parameters gives the same
hash (auditors' "reperformance" of information produced by the entity).

Layout (schema "orca-relay/evidence/v1"):

    schema        "orca-relay/evidence/v1"
    generator     "orca-relay <version>"
    report        {"id", "generated_at"}
    workspace     {"id", "name"}
    framework     {"id", "name", "version", "state"}
    residency     {"region": str | null, "note"}
    subprocessors [{"name", "role", "regions"}]
    window        {"since", "until"}                     observation window, RFC 3339
    coverage      {"counts": {"enforcing", "observe", "gap"},   clauses per state
                   "clauses": [{"id", "title", "state",
                                "controls": [{"id", "kind", "state",
                                              "would_have_blocked", "applied"}]}]}
    gaps          [{"clause_id", "title", "reason"}]    organizational clauses, disclosed
    totals        {"clauses", "controls", "would_have_blocked", "applied", "samples"}
    samples       [masked evidence events]               at most N per control (caller)
    populations   [{"figure", "query", "count"}]         what produced each figure
    event_log     {"first_seq", "last_seq", "head_hash", "events"}   chain head in window
    kid           signing key id
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import rfc8785

from relay import __version__

SCHEMA = "orca-relay/evidence/v1"


@dataclass(frozen=True)
class EvidenceInputs:
    """What the report generator gathered from the store; nothing here is read again."""

    report_id: str
    workspace_id: str
    workspace_name: str
    framework_id: str
    framework_name: str
    framework_version: str
    region: str | None
    generated_at: str
    window_since: str
    window_until: str
    readiness: dict[str, Any]
    samples: list[dict[str, Any]]
    populations: list[dict[str, Any]]
    log: dict[str, Any]
    subprocessors: list[dict[str, Any]]
    kid: str


def build_evidence(inputs: EvidenceInputs) -> dict[str, Any]:
    """The evidence document (layout in the module docstring); plain JSON values only."""
    clauses = [_clause(c) for c in inputs.readiness.get("clauses", [])]
    controls = [control for clause in clauses for control in clause["controls"]]
    return {
        "schema": SCHEMA,
        "generator": f"orca-relay {__version__}",
        "report": {"id": inputs.report_id, "generated_at": inputs.generated_at},
        "workspace": {"id": inputs.workspace_id, "name": inputs.workspace_name},
        "framework": {"id": inputs.framework_id, "name": inputs.framework_name,
                      "version": inputs.framework_version,
                      "state": inputs.readiness.get("state")},
        "residency": {"region": inputs.region, "note": residency_note(inputs.region)},
        "subprocessors": [dict(s) for s in inputs.subprocessors],
        "window": {"since": inputs.window_since, "until": inputs.window_until},
        "coverage": {"counts": dict(inputs.readiness.get("counts", {})), "clauses": clauses},
        "gaps": [{"clause_id": c["id"], "title": c["title"], "reason": c["reason"]}
                 for c in clauses if c["state"] == "gap"],
        "totals": {
            "clauses": len(clauses),
            "controls": len(controls),
            "would_have_blocked": sum(int(c["would_have_blocked"]) for c in controls),
            "applied": sum(int(c["applied"]) for c in controls),
            "samples": len(inputs.samples),
        },
        "samples": [dict(s) for s in inputs.samples],
        "populations": [dict(p) for p in inputs.populations],
        "event_log": {key: inputs.log.get(key)
                      for key in ("first_seq", "last_seq", "head_hash", "events")},
        "kid": inputs.kid,
    }


def residency_note(region: str | None) -> str:
    """The human sentence that goes with the region claim."""
    if region is None:
        return ("No data-residency region was declared for this workspace when the report "
                "was generated.")
    return (f"Generated while the workspace declared data residency region '{region}'; the "
            "relay serves this report only while the workspace's region still matches.")


def _clause(clause: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": clause["id"], "title": clause["title"],
                           "state": clause["state"],
                           "controls": [{"id": c["id"], "kind": c["kind"], "state": c["state"],
                                         "would_have_blocked": c["would_have_blocked"],
                                         "applied": c["applied"]}
                                        for c in clause.get("controls", [])]}
    if clause["state"] == "gap":
        out["reason"] = clause.get("reason") or ""
    return out


def canonical(document: dict[str, Any]) -> bytes:
    """RFC 8785 bytes: the exact bytes the evidence hash is over (`evidence.json`)."""
    return rfc8785.dumps(document)


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256, the form `sha256sum` prints."""
    return hashlib.sha256(data).hexdigest()
