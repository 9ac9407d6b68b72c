"""The evidence feeds and the audit trail, newest first, a page at a time.

The cursor is the `seq` of the last entry shown (opaque to clients): a page never
repeats or skips an entry, even while new ones arrive at the top.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from relay.admin.authz import Call, store_of
from relay.admin.http import decode_cursor, encode_cursor, json_response, limit_of
from relay.errors import InvalidRequest
from relay.store.base import rfc3339

MATCHES_FILTERS = ("guardrail_id", "key_id", "request_id", "detector", "category", "mode",
                   "verdict", "outcome")
EVENTS_FILTERS = ("policy_id", "key_id", "request_id", "verdict", "outcome", "mode", "point")
TIME_FILTERS = ("since", "until")


def _time(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        moment: datetime | None = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidRequest(f"{name} must be an RFC 3339 time with a zone, e.g. "
                             "2026-11-23T00:00:00Z", param=name, code="invalid_value")
    return rfc3339(moment)


def _seq_page(entries: list[dict[str, Any]], limit: int) -> web.Response:
    """`entries` holds up to limit + 1 rows: the extra one only says there is more."""
    shown = entries[:limit]
    more = len(entries) > limit
    return json_response({"data": shown,
                          "next_cursor": encode_cursor(shown[-1]["seq"]) if more else None})


async def _feed(request: web.Request, call: Call, plane: str,
                allowed: tuple[str, ...]) -> web.StreamResponse:
    unknown = sorted(set(request.query) - {*allowed, *TIME_FILTERS, "limit", "cursor"})
    if unknown:
        raise InvalidRequest(f"unknown filter {unknown[0]!r}; filters: "
                             f"{', '.join((*allowed, *TIME_FILTERS))}", param=unknown[0],
                             code="unknown_parameter")
    limit = limit_of(request)
    events = await store_of(request).query_events(
        call.workspace_id, plane,
        filters={k: v for k, v in request.query.items() if k in allowed},
        since=_time(request, "since"), until=_time(request, "until"),
        before_seq=decode_cursor(request, int), limit=limit + 1)
    return _seq_page(events, limit)


async def matches(request: web.Request, call: Call) -> web.StreamResponse:
    return await _feed(request, call, "guardrail", MATCHES_FILTERS)


async def events(request: web.Request, call: Call) -> web.StreamResponse:
    return await _feed(request, call, "firewall", EVENTS_FILTERS)


async def audit(request: web.Request, call: Call) -> web.StreamResponse:
    unknown = sorted(set(request.query) - {"limit", "cursor"})
    if unknown:
        raise InvalidRequest(f"unknown parameter {unknown[0]!r}", param=unknown[0],
                             code="unknown_parameter")
    limit = limit_of(request)
    entries = await store_of(request).list_audit(
        call.workspace_id, before_seq=decode_cursor(request, int), limit=limit + 1)
    return _seq_page(entries, limit)
