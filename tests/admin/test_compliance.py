"""The spec's walkthrough over HTTP: install SOC 2 in observe, read readiness, go live,
and see the same traffic blocked through the official SDK, without charging the key."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest

from relay.store.base import (
    AuditDraft,
    FirewallPolicyRecord,
    GuardrailRecord,
    PackInstallation,
    StoreError,
    rfc3339_now,
)
from tests.admin.conftest import Console

AWS_KEY = "AKIAZ7Q3KXW2M4H5PLTB"
METADATA_CALL = {"x-mock-tool-calls": orjson.dumps([{"name": "fetch", "arguments": orjson.dumps(
    {"url": "http://169.254.169.254/latest/meta-data/"}).decode()}]).decode()}


async def _traffic(console: Console, key: str) -> dict[str, str]:
    """A prompt with a secret and an answer with a tool call to the metadata address;
    returns what happened to each."""
    outcome: dict[str, str] = {}
    async with openai.AsyncOpenAI(base_url=console.relay.base_url, api_key=key,
                                  max_retries=0) as client:
        for name, content, headers in (("secret", f"deploy with {AWS_KEY}", {}),
                                       ("egress", "fetch it", METADATA_CALL)):
            try:
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": content}],
                    extra_headers=headers)
                outcome[name] = "passed"
            except openai.BadRequestError as exc:
                outcome[name] = str(exc.code)
    return outcome


def _clause(readiness: dict[str, Any], clause_id: str) -> dict[str, Any]:
    (soc2,) = [f for f in readiness["frameworks"] if f["id"] == "soc2"]
    return next(c for c in soc2["clauses"] if c["id"] == clause_id)


async def test_install_observe_readiness_golive_enforce(console: Console) -> None:
    token = await console.admin_token()
    catalog = (await console.call("GET", "/api/compliance/catalog", token=token)).body
    assert {f["id"] for f in catalog["frameworks"]} >= {
        "soc2", "hipaa", "pci-dss", "gdpr", "iso27001", "eu-ai-act"}
    assert {f["state"] for f in catalog["frameworks"]} == {"available"}

    early = await console.call("POST", "/api/compliance/packs/soc2/golive", token=token,
                               json={})
    assert (early.status, early.code) == (409, "pack_not_installed")
    installed = await console.call("POST", "/api/compliance/packs/soc2/install", token=token)
    assert installed.status == 201
    assert installed.body["framework"] == "soc2" and installed.body["state"] == "observe"
    again = await console.call("POST", "/api/compliance/packs/soc2/install", token=token)
    assert (again.status, again.code) == (409, "pack_already_installed")
    unknown = await console.call("POST", "/api/compliance/packs/sox/install", token=token)
    assert (unknown.status, unknown.code) == (404, "unknown_framework")

    key_id, key = await console.relay.create_key(quota_tokens=10_000, quota_period="day")
    assert await _traffic(console, key) == {"secret": "passed", "egress": "passed"}
    readiness = (await console.call("GET", "/api/compliance/readiness", token=token)).body
    (soc2,) = readiness["frameworks"]
    assert soc2["state"] == "observe" and soc2["counts"]["enforcing"] == 0
    assert soc2["counts"]["gap"] >= 2
    for gap in ("CC1.4", "CC9.2"):
        assert _clause(readiness, gap)["state"] == "gap" and _clause(readiness, gap)["reason"]
    would = sum(c["would_have_blocked"] for clause in soc2["clauses"]
                for c in clause["controls"])
    assert would >= 2  # the secret (block) and the metadata egress (deny), at least
    assert all(c["applied"] == 0 for clause in soc2["clauses"] for c in clause["controls"])

    live = await console.call("POST", "/api/compliance/packs/soc2/golive", token=token,
                              json={"promote_default": True})
    assert live.status == 200 and live.body == {
        "framework": "soc2", "state": "live", "promoted_default": True,
        "guardrail_id": installed.body["guardrail_id"],
        "firewall_policy_id": installed.body["firewall_policy_id"]}
    twice = await console.call("POST", "/api/compliance/packs/soc2/golive", token=token,
                               json={})
    assert (twice.status, twice.code) == (409, "pack_already_live")

    await console.relay.services.access.refresh()  # what each relay does every 0.5 s
    access = console.relay.services.access
    used = access.used((key_id, rfc3339_now()[:10]))
    metered = console.relay.services.metrics.tokens.get("metered")
    assert await _traffic(console, key) == {"secret": "guardrail_blocked",
                                            "egress": "firewall_blocked"}
    # input block: before metering; output deny: refunded — the key is charged nothing
    assert console.relay.services.metrics.tokens.get("metered") == metered
    assert access.used((key_id, rfc3339_now()[:10])) == used
    assert console.relay.services.metrics.tokens.get("refunded") > 0

    after = (await console.call("GET", "/api/compliance/readiness", token=token)).body
    assert after["frameworks"][0]["state"] == "live"
    assert after["frameworks"][0]["counts"]["enforcing"] >= 2
    applied = sum(c["applied"] for clause in after["frameworks"][0]["clauses"]
                  for c in clause["controls"])
    assert applied >= 2
    guardrails = (await console.call("GET", "/api/guardrails", token=token)).body["data"]
    (pack_guardrail,) = [g for g in guardrails if g["source"] == "pack:soc2"]
    assert pack_guardrail["mode"] == "enforce" and pack_guardrail["is_default"] is True
    trail = (await console.call("GET", "/api/audit", token=token)).body["data"]
    assert [e["action"] for e in trail][:2] == ["pack.golive", "pack.install"]


async def test_live_soc2_masks_secrets_and_pii_in_streamed_answers(console: Console) -> None:
    token = await console.admin_token()
    await console.call("POST", "/api/compliance/packs/soc2/install", token=token)
    await console.call("POST", "/api/compliance/packs/soc2/golive", token=token, json={})
    await console.relay.services.access.refresh()
    reply = f"mail jane.roe@example.org the key {AWS_KEY}"
    async with openai.AsyncOpenAI(base_url=console.relay.base_url, api_key=console.relay.key,
                                  max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True,
            extra_headers={"x-mock-reply": reply, "x-mock-chunks": "7"})
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream
                        if chunk.choices])
    assert "jane.roe" not in text and AWS_KEY not in text and "[EMAIL_ADDRESS_1]" in text


async def test_a_failed_install_leaves_nothing_behind(console: Console) -> None:
    store = console.relay.services.store
    ws = console.relay.boot.workspace.id
    now = rfc3339_now()
    guardrail = GuardrailRecord("gr_half", ws, "g", "observe", [], False, "pack:soc2", now, now)
    # The policy breaks a CHECK constraint: it fails after the guardrail was written.
    broken = FirewallPolicyRecord("fw_half", ws, "p", "not-a-mode", {"schema": 1, "rules": []},
                                  "pack:soc2", now, now)
    with pytest.raises(StoreError):
        await store.install_pack(
            PackInstallation(ws, "soc2", "v", "observe", "gr_half", "fw_half", now),
            guardrail, broken, audit=AuditDraft(ws, "test", "pack.install", "soc2"))
    assert await store.list_guardrails(ws) == []
    assert await store.list_firewall_policies(ws) == []
    assert await store.list_installations(ws) == []
    assert await store.list_audit(ws) == []
