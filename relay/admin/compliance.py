"""`/api/compliance/*` (spec page 1, sections 2 to 4): catalog, install, readiness, go-live.

Install materialises the pack's guardrail (observe: every action recorded as a flag)
and firewall policy (shadow) in one transaction with the installation and its audit
entry; from then on both evaluate all of the workspace's relay traffic. Go-live flips
both to enforce (and can make the guardrail the workspace default) in one transaction.
Readiness is computed from the pack (clause → controls) and the evidence feeds.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relay.admin.authz import Call, store_of
from relay.admin.http import field, json_response, read_object
from relay.compliance.packs import Clause, Pack, catalog
from relay.errors import NotFound, StateConflict
from relay.store.base import (
    AuditDraft,
    Conflict,
    FirewallPolicyRecord,
    GuardrailRecord,
    PackInstallation,
    Store,
    new_id,
    rfc3339_now,
)

_APPLIED = frozenset({"blocked", "masked", "denied"})


async def load_pack(store: Store, workspace_id: str, match: dict[str, str]) -> Pack:
    pack = catalog().get(match["framework"])
    if pack is None:
        raise NotFound(f"no framework {match['framework']!r} in the catalog "
                       f"({', '.join(sorted(catalog()))})", code="unknown_framework")
    return pack


def _installation_view(i: PackInstallation) -> dict[str, Any]:
    return {"framework": i.framework, "version": i.version, "state": i.state,
            "guardrail_id": i.guardrail_id, "firewall_policy_id": i.firewall_policy_id,
            "installed_at": i.installed_at, "live_at": i.live_at}


async def list_catalog(request: web.Request, call: Call) -> web.StreamResponse:
    installed = {i.framework: i for i in
                 await store_of(request).list_installations(call.workspace_id)}
    frameworks = []
    for pack in sorted(catalog().values(), key=lambda p: p.id):
        found = installed.get(pack.id)
        frameworks.append({"id": pack.id, "name": pack.name, "version": pack.version,
                           "clauses": len(pack.clauses), "installed": found is not None,
                           "state": found.state if found else "available"})
    return json_response({"frameworks": frameworks})


async def install(request: web.Request, call: Call) -> web.StreamResponse:
    pack: Pack = call.object
    now = rfc3339_now()
    source = f"pack:{pack.id}"
    guardrail = GuardrailRecord(new_id("gr"), call.workspace_id, pack.guardrail_name,
                                "observe", pack.guardrail_rules, False, source, now, now)
    policy = FirewallPolicyRecord(new_id("fw"), call.workspace_id, pack.firewall_name,
                                  "shadow", pack.firewall_document, source, now, now)
    installation = PackInstallation(call.workspace_id, pack.id, pack.version, "observe",
                                    guardrail.id, policy.id, now)
    try:
        await store_of(request).install_pack(installation, guardrail, policy, audit=AuditDraft(
            call.workspace_id, call.actor, "pack.install", pack.id, after=_installation_view))
    except Conflict:
        raise StateConflict(f"{pack.id} is installed in this workspace already",
                            code="pack_already_installed") from None
    return json_response({"framework": pack.id, "guardrail_id": guardrail.id,
                          "firewall_policy_id": policy.id, "state": "observe"}, status=201)


async def golive(request: web.Request, call: Call) -> web.StreamResponse:
    pack: Pack = call.object
    body = await read_object(request, ("promote_default",))
    promote = field(body, "promote_default", bool, default=False)
    store = store_of(request)
    current = {i.framework: i for i in await store.list_installations(call.workspace_id)}
    found = current.get(pack.id)
    if found is None:
        raise StateConflict(f"{pack.id} is not installed; install it first",
                            code="pack_not_installed")
    if found.state == "live":
        raise StateConflict(f"{pack.id} is live already", code="pack_already_live")
    live = await store.golive_pack(
        call.workspace_id, pack.id, promote_default=promote, at=rfc3339_now(),
        audit=AuditDraft(call.workspace_id, call.actor, "pack.golive", pack.id,
                         before=_installation_view(found),
                         after=lambda i: {**_installation_view(i),
                                          "promoted_default": promote}))
    if live is None:
        raise StateConflict(f"{pack.id} is not installed", code="pack_not_installed")
    return json_response({"framework": pack.id, "state": "live",
                          "guardrail_id": live.guardrail_id,
                          "firewall_policy_id": live.firewall_policy_id,
                          "promoted_default": promote})


async def readiness(request: web.Request, call: Call) -> web.StreamResponse:
    store = store_of(request)
    frameworks = []
    for installation in await store.list_installations(call.workspace_id):
        pack = catalog().get(installation.framework)
        if pack is not None:
            frameworks.append(await framework_readiness(store, pack, installation))
    return json_response({"frameworks": frameworks})


async def framework_readiness(store: Store, pack: Pack, i: PackInstallation
                              ) -> dict[str, Any]:
    """One installed pack's readiness (also the input of its signed reports)."""
    modes = {g.id: g.mode for g in await store.list_guardrails(i.workspace_id)}
    modes |= {p.id: p.mode for p in await store.list_firewall_policies(i.workspace_id)}
    enforcing = {"guardrail": modes.get(i.guardrail_id) == "enforce",
                 "firewall": modes.get(i.firewall_policy_id) == "enforce"}
    counts = {
        "guardrail": _per_rule(await store.count_control_events(
            i.workspace_id, "guardrail", ("guardrail_id", i.guardrail_id), i.installed_at)),
        "firewall": _per_rule(await store.count_control_events(
            i.workspace_id, "firewall", ("policy_id", i.firewall_policy_id), i.installed_at)),
    }
    clauses = [_clause(c, enforcing, counts) for c in pack.clauses]
    tally = {state: sum(1 for c in clauses if c["state"] == state)
             for state in ("enforcing", "observe", "gap")}
    return {"id": pack.id, "version": i.version, "state": i.state, "counts": tally,
            "clauses": clauses}


def _per_rule(rows: list[tuple[str | None, bool, str, int]]) -> dict[str, tuple[int, int]]:
    """rule id → (would-have-blocked, applied) counts."""
    out: dict[str, tuple[int, int]] = {}
    for rule_id, would_have, outcome, n in rows:
        if rule_id is None:
            continue
        would, done = out.get(rule_id, (0, 0))
        out[rule_id] = (would + (n if would_have else 0),
                        done + (n if outcome in _APPLIED else 0))
    return out


def _clause(clause: Clause, enforcing: dict[str, bool],
            counts: dict[str, dict[str, tuple[int, int]]]) -> dict[str, Any]:
    if clause.organizational is not None:
        return {"id": clause.id, "title": clause.title, "state": "gap", "controls": [],
                "reason": clause.organizational}
    controls = []
    for control in clause.controls:
        would, done = counts[control.kind].get(control.rule_id, (0, 0))
        controls.append({"id": control.rule_id, "kind": control.kind,
                         "state": "enforcing" if enforcing[control.kind] else "observe",
                         "would_have_blocked": would, "applied": done})
    state = "enforcing" if all(c["state"] == "enforcing" for c in controls) else "observe"
    return {"id": clause.id, "title": clause.title, "state": state, "controls": controls,
            "reason": None}
