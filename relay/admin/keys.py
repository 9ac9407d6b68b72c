"""`/api/keys`: relay keys over HTTP. The secret is shown once, in the create answer.

`usage_tokens` is the key's lifetime total as committed to the store (the relay writes
usage once per refresh interval, so it trails live traffic by up to one interval);
`period_usage_tokens` is the current quota period's, for a key with a quota.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relay.admin.authz import Call, store_of
from relay.admin.http import choice, field, json_response, page, read_object
from relay.errors import InvalidRequest, NotFound, StateConflict
from relay.proxy.access import bucket_of, new_relay_key
from relay.store.base import QUOTA_PERIODS, AuditDraft, RelayKey, Store

_CREATE_FIELDS = ("name", "quota_tokens", "quota_period", "guardrail_id")


def key_object(key: RelayKey, usage: dict[tuple[str, str], int]) -> dict[str, Any]:
    bucket = bucket_of(key)
    return {
        "id": key.id, "name": key.name, "prefix": key.prefix, "created_at": key.created_at,
        "revoked_at": key.revoked_at, "quota_tokens": key.quota_tokens,
        "quota_period": key.quota_period, "guardrail_id": key.guardrail_id,
        "usage_tokens": usage.get((key.id, "total"), 0),
        "period_usage_tokens": usage.get(bucket, 0) if bucket is not None else None,
    }


def audit_view(key: RelayKey) -> dict[str, Any]:
    return key_object(key, {})


async def _usage(store: Store, keys: list[RelayKey]) -> dict[tuple[str, str], int]:
    buckets = [(k.id, "total") for k in keys]
    buckets += [b for k in keys if (b := bucket_of(k)) is not None]
    return await store.usage(buckets) if buckets else {}


async def load_key(store: Store, workspace_id: str, match: dict[str, str]) -> RelayKey | None:
    key = await store.get_key(match["id"])
    return key if key is not None and key.workspace_id == workspace_id else None


async def list_keys(request: web.Request, call: Call) -> web.StreamResponse:
    store = store_of(request)
    keys = await store.list_keys(call.workspace_id)
    usage = await _usage(store, keys)
    return page(request, keys, lambda k: key_object(k, usage), lambda k: (k.created_at + k.id))


async def get_key(request: web.Request, call: Call) -> web.StreamResponse:
    key: RelayKey = call.object
    return json_response(key_object(key, await _usage(store_of(request), [key])))


def _quota(body: dict[str, Any]) -> tuple[int | None, Any]:
    tokens = field(body, "quota_tokens", int)
    period = choice(body, "quota_period", QUOTA_PERIODS)
    if (tokens is None) != (period is None):
        raise InvalidRequest("quota_tokens and quota_period go together (or both null)",
                             param="quota_tokens", code="invalid_value")
    if tokens is not None and tokens < 0:
        raise InvalidRequest("quota_tokens must be 0 or more", param="quota_tokens",
                             code="invalid_value")
    return tokens, period


async def _guardrail(store: Store, workspace_id: str, body: dict[str, Any]) -> str | None:
    guardrail_id: str | None = field(body, "guardrail_id", str)
    if guardrail_id is not None and guardrail_id not in {
            g.id for g in await store.list_guardrails(workspace_id)}:
        raise InvalidRequest(f"no guardrail {guardrail_id} in this workspace",
                             param="guardrail_id", code="invalid_value")
    return guardrail_id


async def create_key(request: web.Request, call: Call) -> web.StreamResponse:
    store = store_of(request)
    body = await read_object(request, _CREATE_FIELDS)
    name = field(body, "name", str, default="key")
    tokens, period = _quota(body)
    guardrail_id = await _guardrail(store, call.workspace_id, body)
    record, secret = new_relay_key(call.workspace_id, name, tokens, period)
    if guardrail_id is not None:
        record = RelayKey(**{**record.__dict__, "guardrail_id": guardrail_id})
    made = await store.create_key(record, audit=AuditDraft(
        call.workspace_id, call.actor, "key.create", record.id, after=audit_view))
    return json_response({**key_object(made, {}), "key": secret}, status=201)


async def update_key(request: web.Request, call: Call) -> web.StreamResponse:
    store = store_of(request)
    key: RelayKey = call.object
    body = await read_object(request, _CREATE_FIELDS)
    if key.revoked_at is not None:
        raise StateConflict(f"key {key.id} is revoked", code="key_revoked")
    quota = None
    if "quota_tokens" in body or "quota_period" in body:
        quota = _quota(body)
    guardrail = None
    if "guardrail_id" in body:
        guardrail = (await _guardrail(store, call.workspace_id, body),)
    updated = await store.update_key(
        key.id, name=field(body, "name", str), quota=quota, guardrail_id=guardrail,
        audit=AuditDraft(call.workspace_id, call.actor, "key.update", key.id,
                         before=audit_view(key), after=audit_view))
    if updated is None:
        raise NotFound(f"key {key.id} does not exist")
    return json_response(key_object(updated, await _usage(store, [updated])))


async def revoke_key(request: web.Request, call: Call) -> web.StreamResponse:
    store = store_of(request)
    key: RelayKey = call.object
    if key.revoked_at is not None:
        raise StateConflict(f"key {key.id} is already revoked", code="key_revoked")
    await store.revoke_key(key.id, audit=AuditDraft(
        call.workspace_id, call.actor, "key.revoke", key.id, before=audit_view(key),
        after=audit_view))
    return web.Response(status=204)
