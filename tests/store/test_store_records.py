"""Compliance packs, readiness counts, residency, signed reports and their files, share
links, the evidence log head and workspace HMAC keys, on both backends."""

from __future__ import annotations

from typing import Any

import pytest

from relay.evidence import EvidenceEvent
from relay.proxy.access import new_relay_key
from relay.store.audit import verify_audit_chain
from relay.store.base import (
    GENESIS_HASH,
    AuditDraft,
    Conflict,
    FirewallPolicyRecord,
    GuardrailRecord,
    PackInstallation,
    ReportRecord,
    ShareRecord,
    StoreError,
    new_id,
    rfc3339_now,
)
from tests.store.conftest import AnyStore


def _draft(ws: str, action: str, target: str, **kw: Any) -> AuditDraft:
    return AuditDraft(ws, "user:usr_1", action, target, **kw)


def _pack(ws: str, framework: str = "soc2"
          ) -> tuple[PackInstallation, GuardrailRecord, FirewallPolicyRecord]:
    now = rfc3339_now()
    guardrail = GuardrailRecord(new_id("gr"), ws, f"{framework} pack", "observe",
                                [{"id": "r1"}], False, f"pack:{framework}", now, now)
    policy = FirewallPolicyRecord(new_id("fw"), ws, f"{framework} pack", "shadow",
                                  {"schema": 1, "rules": []}, f"pack:{framework}", now, now)
    installation = PackInstallation(ws, framework, "1.0", "observe", guardrail.id, policy.id,
                                    now)
    return installation, guardrail, policy


async def test_install_and_golive_a_pack(store: AnyStore) -> None:
    ws = (await store.create_workspace("acme", "paid")).id
    installation, guardrail, policy = _pack(ws)
    version = await store.state_version()
    made = await store.install_pack(installation, guardrail, policy,
                                    audit=_draft(ws, "pack.install", "soc2",
                                                 after=lambda r: {"state": r.state}))
    assert made == installation and await store.list_installations(ws) == [installation]
    assert await store.list_guardrails(ws) == [guardrail]
    assert await store.list_firewall_policies(ws) == [policy]
    assert await store.state_version() > version
    again, g2, p2 = _pack(ws)
    with pytest.raises(Conflict):  # installed already: nothing of the second attempt stays
        await store.install_pack(again, g2, p2, audit=_draft(ws, "pack.install", "soc2"))
    assert len(await store.list_guardrails(ws)) == 1
    assert len(await store.list_firewall_policies(ws)) == 1
    at = "2026-11-23T12:00:00.000000Z"
    live = await store.golive_pack(ws, "soc2", promote_default=True, at=at,
                                   audit=_draft(ws, "pack.golive", "soc2"))
    assert live is not None and (live.state, live.live_at) == ("live", at)
    assert await store.list_installations(ws) == [live]
    (g,) = await store.list_guardrails(ws)
    (p,) = await store.list_firewall_policies(ws)
    assert (g.mode, g.is_default, p.mode) == ("enforce", True, "enforce")
    assert await store.golive_pack(ws, "hipaa", promote_default=False, at=at,
                                   audit=_draft(ws, "pack.golive", "hipaa")) is None
    entries = await store.list_audit(ws)
    assert [(e["action"], e["after"]) for e in entries] == [
        ("pack.golive", None), ("pack.install", {"state": "observe"})]
    assert verify_audit_chain(await store.audit_chain(ws)) == []


async def test_count_control_events_groups_rule_would_have_and_outcome(
    store: AnyStore,
) -> None:
    ws = (await store.create_workspace("acme", "paid")).id
    at = "2026-11-23T10:00:00.000000Z"

    def event(gr: str, **fields: Any) -> EvidenceEvent:
        return EvidenceEvent(ws, "guardrail", "req", None, {"guardrail_id": gr, **fields},
                             at=fields.pop("at", at))

    await store.append_events([
        event("gr_a", rule_id="r1", would_have=True, outcome="blocked"),
        event("gr_a", rule_id="r1", would_have=True, outcome="blocked"),
        event("gr_a", rule_id="r1", would_have=False, outcome="allowed"),
        event("gr_a", rule_id=None, would_have=None, outcome="allowed"),
        event("gr_a", outcome="allowed"),  # no rule_id, no would_have
        event("gr_a", rule_id="r2", would_have=True, outcome="blocked",
              at="2026-11-22T10:00:00.000000Z"),  # before `since`
        event("gr_b", rule_id="r1", would_have=True, outcome="blocked"),
    ])
    counts = await store.count_control_events(ws, "guardrail", ("guardrail_id", "gr_a"),
                                              "2026-11-23T00:00:00Z")
    assert sorted(counts, key=repr) == sorted([
        ("r1", True, "blocked", 2), ("r1", False, "allowed", 1), (None, False, "allowed", 2),
    ], key=repr)
    assert await store.count_control_events(ws, "firewall", ("guardrail_id", "gr_a"),
                                            "2026-11-23T00:00:00Z") == []
    with pytest.raises(ValueError, match="cannot count"):
        await store.count_control_events(ws, "guardrail", ("body", "x"), at)


async def test_residency_is_set_audited_and_checked(store: AnyStore) -> None:
    ws = (await store.create_workspace("acme", "paid")).id
    assert await store.get_residency(ws) is None
    assert await store.set_residency(ws, "eu", audit=_draft(ws, "residency.update", ws)) == "eu"
    assert await store.get_residency(ws) == "eu"
    assert await store.set_residency(ws, None, audit=_draft(ws, "residency.update", ws)) is None
    assert await store.get_residency(ws) is None
    with pytest.raises(StoreError):  # CHECK (region IN (...))
        await store.set_residency(ws, "mars", audit=_draft(ws, "residency.update", ws))
    assert len(await store.list_audit(ws)) == 2


async def test_reports_files_and_shares(store: AnyStore) -> None:
    ws = (await store.create_workspace("acme", "paid")).id
    now = "2026-11-23T10:00:00.000000Z"
    eu = ReportRecord(new_id("rep"), ws, "soc2", "pdf", "eu", now, "a" * 64, "b" * 64, "k1")
    plain = ReportRecord(new_id("rep"), ws, "soc2", "json", None, now, "c" * 64, "d" * 64, "k1")
    pdf = bytes(range(256)) * 4 + b"\x00%PDF"
    assert await store.create_report(eu, {"report.pdf": pdf, "evidence.json": b"{}"},
                                     audit=_draft(ws, "report.generate", eu.id)) == eu
    await store.create_report(plain, {"report.json": b"[]"},
                              audit=_draft(ws, "report.generate", plain.id))
    assert await store.list_reports(ws) == sorted([eu, plain], key=lambda r: r.id)
    assert await store.get_report(eu.id) == eu and await store.get_report("rep_x") is None
    assert await store.report_file(eu, "report.pdf") == pdf
    assert await store.report_file(plain, "report.json") == b"[]"
    assert await store.report_file(eu, "missing.pdf") is None
    with pytest.raises(Conflict):  # one id, one report
        await store.create_report(eu, {}, audit=_draft(ws, "report.generate", eu.id))
    with pytest.raises(StoreError):  # CHECK (format IN ('pdf', 'json', 'csv'))
        bad = ReportRecord(new_id("rep"), ws, "soc2", "docx", None, now, "e", "f", "k1")
        await store.create_report(bad, {}, audit=_draft(ws, "report.generate", bad.id))
    share = ShareRecord(new_id("sh"), ws, eu.id, "ef" * 32, now)
    assert await store.create_share(share, audit=_draft(ws, "share.create", share.id)) == share
    assert await store.get_share(share.id) == share
    assert await store.share_by_token("ef" * 32) == share
    assert await store.share_by_token("00" * 32) is None
    revoked = await store.revoke_share(share.id, "2026-11-23T11:00:00.000000Z",
                                       audit=_draft(ws, "share.revoke", share.id))
    assert revoked is not None and revoked.revoked_at == "2026-11-23T11:00:00.000000Z"
    assert await store.revoke_share(share.id, "2026-11-23T12:00:00.000000Z",
                                    audit=_draft(ws, "share.revoke", share.id)) is None
    assert [e["action"] for e in await store.list_audit(ws)] == [
        "share.revoke", "share.create", "report.generate", "report.generate"]


async def test_log_head_and_hmac_keys(store: AnyStore) -> None:
    ws = (await store.create_workspace("acme", "paid")).id
    other = (await store.create_workspace("other", "free")).id
    assert await store.evidence_log_head(ws) == {
        "first_seq": 0, "last_seq": 0, "head_hash": GENESIS_HASH, "events": 0}
    await store.append_events([EvidenceEvent(ws, "guardrail", f"req_{i}", None, {})
                               for i in range(3)])
    last = (await store.list_events(ws, "guardrail"))[-1]
    assert await store.evidence_log_head(ws) == {
        "first_seq": 1, "last_seq": 3, "head_hash": last["hash"], "events": 3}
    keys = await store.workspace_hmac_keys()
    assert set(keys) == {ws, other} and all(len(k) == 32 for k in keys.values())
    assert await store.workspace_hmac_keys() == keys


async def test_key_guardrail_override_and_usage_of_unknown_buckets(store: AnyStore) -> None:
    ws = (await store.create_workspace("acme", "paid")).id
    record, _ = new_relay_key(ws, "ci")
    await store.create_key(record)
    version = await store.state_version()
    await store.update_key(record.id, guardrail_id=("gr_1",))
    assert await store.state_version() == version + 1
    key = await store.get_key(record.id)
    assert key is not None and key.guardrail_id == "gr_1"
    assert await store.usage([(record.id, "2026-11"), ("key_x", "total")]) == {
        (record.id, "2026-11"): 0, ("key_x", "total"): 0}
    assert await store.usage([]) == {}


async def test_empty_writes_and_reads(store: AnyStore) -> None:
    await store.append_events([])
    await store.add_usage([])
    assert await store.workspace_hmac_keys() == {}
    assert await store.list_audit("ws_missing") == []
    assert await store.audit_chain("ws_missing") == []
    assert await store.list_events("ws_missing", "guardrail") == []
    assert await store.list_installations("ws_missing") == []
    assert await store.list_reports("ws_missing") == []


async def test_public_keys_are_published_once_per_kid(store: AnyStore) -> None:
    await store.publish_public_keys({"ed25519-aaaa": "PEM A", "ed25519-bbbb": "PEM B"})
    await store.publish_public_keys({"ed25519-aaaa": "ignored: first one stays"})
    assert await store.published_public_keys() == {"ed25519-aaaa": "PEM A",
                                                   "ed25519-bbbb": "PEM B"}
