"""The evidence document: layout, canonical bytes, reproducible hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import rfc8785

from relay.compliance.evidence import (
    SCHEMA,
    EvidenceInputs,
    build_evidence,
    canonical,
    residency_note,
    sha256_hex,
)


def sample_readiness() -> dict[str, Any]:
    """A readiness dict shaped like admin/compliance.framework_readiness answers."""
    return {
        "id": "soc2", "version": "2017", "state": "observe",
        "counts": {"enforcing": 1, "observe": 1, "gap": 1},
        "clauses": [
            {"id": "CC6.1", "title": "Logical access: credentials kept out", "state": "observe",
             "controls": [
                 {"id": "soc2.block-secrets-in", "kind": "guardrail", "state": "observe",
                  "would_have_blocked": 7, "applied": 0},
                 {"id": "soc2.no-private-egress", "kind": "firewall", "state": "observe",
                  "would_have_blocked": 2, "applied": 0}],
             "reason": None},
            {"id": "CC6.7", "title": "Transmission: données masquées", "state": "enforcing",
             "controls": [{"id": "soc2.mask-pii-in", "kind": "guardrail",
                           "state": "enforcing", "would_have_blocked": 0, "applied": 11}],
             "reason": None},
            {"id": "CC1.1", "title": "Integrity and ethical values", "state": "gap",
             "controls": [], "reason": "Organizational: tone at the top is not a gateway "
             "control."},
        ],
    }


def sample_inputs(**overrides: Any) -> EvidenceInputs:
    inputs = EvidenceInputs(
        report_id="rep_01", workspace_id="ws_01", workspace_name="Acme Ørca",
        framework_id="soc2", framework_name="SOC 2", framework_version="2017",
        region="eu", generated_at="2025-03-04T05:06:07Z",
        window_since="2025-03-01T00:00:00Z", window_until="2025-03-04T05:06:07Z",
        readiness=sample_readiness(),
        samples=[{"seq": 3, "control": "soc2.block-secrets-in", "snippet": "key=sk-****"}],
        populations=[{"figure": "would_have_blocked",
                      "query": "events where workspace=ws_01 and would_have", "count": 9}],
        log={"first_seq": 1, "last_seq": 42, "head_hash": "ab" * 32, "events": 42},
        subprocessors=[{"name": "OpenAI", "role": "upstream model provider",
                        "regions": ["us"]}],
        kid="ed25519-0011223344556677",
    )
    return dataclasses.replace(inputs, **overrides)


def test_document_layout() -> None:
    doc = build_evidence(sample_inputs())
    assert doc["schema"] == SCHEMA
    assert doc["report"] == {"id": "rep_01", "generated_at": "2025-03-04T05:06:07Z"}
    assert doc["workspace"] == {"id": "ws_01", "name": "Acme Ørca"}
    assert doc["framework"] == {"id": "soc2", "name": "SOC 2", "version": "2017",
                                "state": "observe"}
    assert doc["residency"]["region"] == "eu" and "'eu'" in doc["residency"]["note"]
    assert doc["window"] == {"since": "2025-03-01T00:00:00Z", "until": "2025-03-04T05:06:07Z"}
    assert doc["coverage"]["counts"] == {"enforcing": 1, "observe": 1, "gap": 1}
    assert [c["id"] for c in doc["coverage"]["clauses"]] == ["CC6.1", "CC6.7", "CC1.1"]
    assert doc["coverage"]["clauses"][0]["controls"][1] == {
        "id": "soc2.no-private-egress", "kind": "firewall", "state": "observe",
        "would_have_blocked": 2, "applied": 0}
    assert doc["gaps"] == [{"clause_id": "CC1.1", "title": "Integrity and ethical values",
                            "reason": sample_readiness()["clauses"][2]["reason"]}]
    assert doc["totals"] == {"clauses": 3, "controls": 3, "would_have_blocked": 9,
                             "applied": 11, "samples": 1}
    assert doc["populations"][0]["count"] == 9
    assert doc["event_log"] == {"first_seq": 1, "last_seq": 42, "head_hash": "ab" * 32,
                                "events": 42}
    assert doc["subprocessors"][0]["name"] == "OpenAI"
    assert doc["kid"] == "ed25519-0011223344556677"


def test_no_region_is_disclosed_as_such() -> None:
    doc = build_evidence(sample_inputs(region=None))
    assert doc["residency"] == {"region": None, "note": residency_note(None)}
    assert "No data-residency region" in doc["residency"]["note"]


def test_canonical_bytes_are_rfc8785_and_reproducible() -> None:
    doc = build_evidence(sample_inputs())
    data = canonical(doc)
    assert data == rfc8785.dumps(json.loads(data))
    assert not data.endswith(b"\n") and b", " not in data
    assert json.loads(data) == doc
    again = canonical(build_evidence(sample_inputs()))
    assert sha256_hex(again) == sha256_hex(data) == hashlib.sha256(data).hexdigest()
    other = canonical(build_evidence(sample_inputs(window_since="2025-02-01T00:00:00Z")))
    assert sha256_hex(other) != sha256_hex(data)


def test_document_does_not_alias_inputs() -> None:
    inputs = sample_inputs()
    doc = build_evidence(inputs)
    doc["samples"][0]["snippet"] = "changed"
    assert inputs.samples[0]["snippet"] == "key=sk-****"
