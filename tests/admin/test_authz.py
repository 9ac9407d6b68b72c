"""Every admin route against every kind of caller, judged by the one route table.

Callers: no session; member and admin of a free and of a paid workspace; each aimed at
their own workspace and at another one. The expected status comes from the table row
(401 → 404 → 403 admin_required → 402 paid_plan_required → the handler), so a route
added without a row, or a row the middleware does not honour, fails here.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from relay.admin.app import ROUTES
from relay.admin.authz import AdminRoute
from relay.proxy.access import new_relay_key
from relay.store.base import (
    AuditDraft,
    FirewallPolicyRecord,
    GuardrailRecord,
    Plan,
    ReportRecord,
    Role,
    ShareRecord,
    rfc3339_now,
)
from tests.admin.conftest import Console

ROLES: tuple[Role, ...] = ("member", "admin")
PLANS: tuple[Plan, ...] = ("free", "paid")


@dataclass(frozen=True)
class World:
    workspaces: dict[str, str]  # "free" / "paid" / "other" → workspace id
    tokens: dict[tuple[Role, Plan], str]
    objects: dict[str, dict[str, str]]  # workspace id → {"keys": id, ...}


async def _world(console: Console) -> World:
    store = console.relay.services.store
    workspaces = {"free": await console.workspace("free", "free"),
                  "paid": await console.workspace("paid", "paid"),
                  "other": await console.workspace("other", "paid")}
    tokens = {}
    for role, plan in itertools.product(ROLES, PLANS):
        tokens[(role, plan)] = await console.user(f"{role}-{plan}@example.com", role,
                                                  workspaces[plan])
    objects: dict[str, dict[str, str]] = {}
    now = rfc3339_now()
    for ws in workspaces.values():
        record, _ = new_relay_key(ws, "walk")
        await store.create_key(record)
        guardrail = GuardrailRecord(f"gr_{ws}", ws, "g", "observe",
                                    [{"id": "r", "categories": ["pii"], "action": "flag"}],
                                    False, "user", now, now)
        await store.create_guardrail(guardrail)
        policy = FirewallPolicyRecord(f"fw_{ws}", ws, "p", "shadow", {"schema": 1, "rules": []},
                                      "user", now, now)
        await store.create_firewall_policy(policy)
        report = ReportRecord(f"rep_{ws}", ws, "soc2", "json", None, now, "0" * 64, "0" * 64,
                              "kid")
        await store.create_report(report, {}, audit=AuditDraft(ws, "test", "report.generate",
                                                               report.id))
        share = ShareRecord(f"shr_{ws}", ws, report.id, f"hash-{ws}", now)
        await store.create_share(share, audit=AuditDraft(ws, "test", "share.create", share.id))
        objects[ws] = {"keys": record.id, "guardrails": guardrail.id,
                       "policies": policy.id, "reports": report.id, "share": share.id}
    return World(workspaces, tokens, objects)


def _path(route: AdminRoute, world: World, workspace: str) -> str:
    if "{framework}" in route.path:
        return route.path.replace("{framework}", "soc2")
    if "{token}" in route.path:
        return route.path.replace("{token}", "orca_share_unknown")
    if "{id}" not in route.path:
        return route.path
    parts = route.path.split("/")
    kind = "policies" if "/firewall/" in route.path else (
        parts[3] if parts[2] == "compliance" else parts[2])
    return route.path.replace("{id}", world.objects[workspace][kind])


def _expected(route: AdminRoute, role: Role | None, plan: Plan, aim: str) -> int | None:
    """The status the table promises, or None: 'the handler ran' (any non-guard status)."""
    if route.access == "public":
        return None
    if role is None:
        return 401
    if route.access == "session":
        return None
    if aim == "other":
        return 404
    if role == "member" and route.access == "admin":
        return 403
    if route.paid and plan == "free":
        return 402
    return None


GUARD_STATUSES = {401, 402, 403, 404}
# Routes that end the caller's session go last, so the walk keeps its sessions.
ORDERED = sorted(ROUTES, key=lambda r: (r.path == "/api/auth/logout", r.method == "DELETE"))


async def test_every_route_against_every_caller(console: Console) -> None:
    world = await _world(console)
    checked = 0
    for route in ORDERED:
        for role, plan, aim in itertools.product((None, *ROLES), PLANS, ("own", "other")):
            if role is None and (plan, aim) != ("free", "own"):
                continue
            if route.path == "/api/auth/logout" and role is not None:
                continue  # walked separately below
            target = world.workspaces[plan if aim == "own" else "other"]
            token = world.tokens[(role, plan)] if role is not None else None
            headers = {"X-Orca-Workspace": target}
            body: dict[str, str] | None = {} if route.method in ("POST", "PATCH") else None
            if route.path == "/api/auth/login":
                body = {"email": "nobody@example.com", "password": "x"}
            answer = await console.call(route.method, _path(route, world, target),
                                        token=token, json=body, headers=headers)
            expected = _expected(route, role, plan, aim)
            where = f"{route.method} {route.path} as {role}/{plan}/{aim}: {answer.body}"
            if expected is None:
                assert answer.status < 500 and (answer.status not in GUARD_STATUSES
                                                or route.access == "public"), where
            else:
                assert answer.status == expected, where
                expected_code = {401: "unauthenticated", 403: "admin_required",
                                 402: "paid_plan_required"}.get(expected)
                if expected_code is not None:
                    assert answer.code == expected_code, where
            checked += 1
    assert checked >= len(ROUTES) * 8
    for token in world.tokens.values():
        assert (await console.call("POST", "/api/auth/logout", token=token)).status == 204


async def test_every_api_route_of_the_app_has_a_table_row(console: Console) -> None:
    app = console.relay.admin_server.app
    rows = {(r.method, r.path) for r in ROUTES}
    registered = {(route.method, route.resource.canonical)
                  for route in app.router.routes()
                  if route.resource is not None
                  and route.resource.canonical.startswith("/api")}
    assert registered == rows


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_rows_are_well_formed(route: AdminRoute) -> None:
    assert route.path.startswith("/api/") and route.summary
    if route.access in ("member", "admin"):  # what a path names is found in the workspace
        assert ("{" in route.path) == (route.load is not None)
    if route.method in ("POST", "PATCH") and route.access in ("member", "admin"):
        assert route.access == "admin"
    if route.method == "PATCH":
        assert route.body is not None
