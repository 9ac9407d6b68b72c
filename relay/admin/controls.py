"""`/api/guardrails` and `/api/firewall/policies`: the two planes' objects over HTTP.

Rules are validated by the same parsers the relay loads them with, so what the API
accepts is exactly what the relay can enforce; changes reach every relay process at
its next state refresh (ORCA_STATE_REFRESH_SECONDS, 0.5 s by default).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from aiohttp import web

from relay.admin.authz import Call, store_of
from relay.admin.http import choice, field, json_response, page, read_object
from relay.errors import InvalidRequest, NotFound
from relay.firewall.policy import MODES as FIREWALL_MODES
from relay.firewall.policy import PolicyError, policy_view, validate_document
from relay.guardrail.policy import MODES as GUARDRAIL_MODES
from relay.guardrail.policy import GuardrailRuleError, guardrail_view, parse_rules
from relay.store.base import (
    AuditDraft,
    FirewallPolicyRecord,
    GuardrailRecord,
    Store,
    new_id,
    rfc3339_now,
)

DETECTOR_IDS: web.AppKey[Collection[str]] = web.AppKey("admin_detector_ids")
_GUARDRAIL_FIELDS = ("name", "mode", "rules", "is_default")
_DOCUMENT_FIELDS = ("schema", "default", "combining", "invalid_arguments", "rules")
_POLICY_FIELDS = ("name", "mode", *_DOCUMENT_FIELDS)


# ---- guardrails ------------------------------------------------------------------------


async def load_guardrail(store: Store, workspace_id: str, match: dict[str, str]
                         ) -> GuardrailRecord | None:
    return next((g for g in await store.list_guardrails(workspace_id) if g.id == match["id"]),
                None)


def _rules(request: web.Request, body: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        parsed = parse_rules(body.get("rules"), request.app[DETECTOR_IDS])
    except GuardrailRuleError as exc:
        raise InvalidRequest(str(exc), param="rules", code="invalid_value") from None
    return [rule.as_dict() for rule in parsed]


async def list_guardrails(request: web.Request, call: Call) -> web.StreamResponse:
    found = await store_of(request).list_guardrails(call.workspace_id)
    return page(request, found, guardrail_view, lambda g: g.created_at + g.id)


async def get_guardrail(request: web.Request, call: Call) -> web.StreamResponse:
    return json_response(guardrail_view(call.object))


async def create_guardrail(request: web.Request, call: Call) -> web.StreamResponse:
    body = await read_object(request, _GUARDRAIL_FIELDS)
    name = field(body, "name", str, required=True)
    mode = choice(body, "mode", GUARDRAIL_MODES, default="observe")
    is_default = field(body, "is_default", bool, default=False)
    now = rfc3339_now()
    record = GuardrailRecord(new_id("gr"), call.workspace_id, name, str(mode),
                             _rules(request, body), is_default, "user", now, now)
    made = await store_of(request).create_guardrail(record, audit=AuditDraft(
        call.workspace_id, call.actor, "guardrail.create", record.id, after=guardrail_view))
    return json_response(guardrail_view(made), status=201)


async def update_guardrail(request: web.Request, call: Call) -> web.StreamResponse:
    current: GuardrailRecord = call.object
    body = await read_object(request, _GUARDRAIL_FIELDS)
    updated = await store_of(request).update_guardrail(
        current.id, name=field(body, "name", str), mode=choice(body, "mode", GUARDRAIL_MODES),
        is_default=field(body, "is_default", bool),
        rules=_rules(request, body) if "rules" in body else None,
        audit=AuditDraft(call.workspace_id, call.actor, "guardrail.update", current.id,
                         before=guardrail_view(current), after=guardrail_view))
    if updated is None:
        raise NotFound(f"guardrail {current.id} does not exist")
    return json_response(guardrail_view(updated))


# ---- firewall policies -----------------------------------------------------------------


async def load_policy(store: Store, workspace_id: str, match: dict[str, str]
                      ) -> FirewallPolicyRecord | None:
    return next((p for p in await store.list_firewall_policies(workspace_id)
                 if p.id == match["id"]), None)


def _document(raw: dict[str, Any]) -> dict[str, Any]:
    try:
        return validate_document(raw)
    except PolicyError as exc:
        message = str(exc)
        raise InvalidRequest(message, param=message.split(":", 1)[0],
                             code="invalid_value") from None


async def list_policies(request: web.Request, call: Call) -> web.StreamResponse:
    found = await store_of(request).list_firewall_policies(call.workspace_id)
    return page(request, found, policy_view, lambda p: p.created_at + p.id)


async def get_policy(request: web.Request, call: Call) -> web.StreamResponse:
    return json_response(policy_view(call.object))


async def create_policy(request: web.Request, call: Call) -> web.StreamResponse:
    body = await read_object(request, _POLICY_FIELDS)
    name = field(body, "name", str, required=True)
    mode = choice(body, "mode", FIREWALL_MODES, default="shadow")
    document = _document({"schema": 1, **{k: body[k] for k in _DOCUMENT_FIELDS if k in body}})
    now = rfc3339_now()
    record = FirewallPolicyRecord(new_id("fw"), call.workspace_id, name, str(mode), document,
                                  "user", now, now)
    made = await store_of(request).create_firewall_policy(record, audit=AuditDraft(
        call.workspace_id, call.actor, "firewall.create", record.id, after=policy_view))
    return json_response(policy_view(made), status=201)


async def update_policy(request: web.Request, call: Call) -> web.StreamResponse:
    current: FirewallPolicyRecord = call.object
    body = await read_object(request, _POLICY_FIELDS)
    changes = {k: body[k] for k in _DOCUMENT_FIELDS if k in body}
    document = _document({**current.document, **changes}) if changes else None
    updated = await store_of(request).update_firewall_policy(
        current.id, name=field(body, "name", str), mode=choice(body, "mode", FIREWALL_MODES),
        document=document,
        audit=AuditDraft(call.workspace_id, call.actor, "firewall.update", current.id,
                         before=policy_view(current), after=policy_view))
    if updated is None:
        raise NotFound(f"firewall policy {current.id} does not exist")
    return json_response(policy_view(updated))
