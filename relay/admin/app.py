"""The admin API's one route table, and the `/api` part of the admin application.

Every route is a row here: method, path, handler, minimum access, paid plan or not, the
object its path names, and what OpenAPI says about it. `authz.authorize` enforces the
row; `openapi.document` describes the rows; tests walk the rows. Nothing else
registers an `/api` route.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler as web_Handler

from relay.admin import account, compliance, controls, feeds, keys, public, reports
from relay.admin.auth import Sessions
from relay.admin.authz import AdminRoute, add_admin_routes
from relay.admin.http import json_response
from relay.admin.openapi import OPENAPI_PATH, document
from relay.compliance.signing import KeyRing
from relay.errors import InternalError, MethodNotAllowed, NotFound, RelayError
from relay.store.base import Store

log = logging.getLogger("orca.admin")

_STR: dict[str, Any] = {"type": "string"}
_RULES: dict[str, Any] = {"type": "array", "items": {"type": "object"}}
KEY_BODY = {"type": "object", "additionalProperties": False, "properties": {
    "name": _STR, "quota_tokens": {"type": ["integer", "null"], "minimum": 0},
    "quota_period": {"enum": ["day", "month", "total", None]},
    "guardrail_id": {"type": ["string", "null"]}}}
GUARDRAIL_BODY = {"type": "object", "additionalProperties": False, "properties": {
    "name": _STR, "mode": {"enum": ["observe", "enforce"]}, "rules": _RULES,
    "is_default": {"type": "boolean"}}}
POLICY_BODY = {"type": "object", "additionalProperties": False, "properties": {
    "name": _STR, "mode": {"enum": ["shadow", "enforce"]}, "schema": {"const": 1},
    "default": {"enum": ["allow", "deny"]},
    "combining": {"enum": ["first-match", "deny-overrides"]},
    "invalid_arguments": {"enum": ["allow", "deny"]}, "rules": _RULES}}
GOLIVE_BODY = {"type": "object", "additionalProperties": False,
               "properties": {"promote_default": {"type": "boolean"}}}
REPORT_BODY = {"type": "object", "additionalProperties": False, "required": ["framework"],
               "properties": {"framework": _STR, "format": {"enum": ["pdf", "json", "csv"]}}}
RESIDENCY_BODY = {"type": "object", "additionalProperties": False, "required": ["region"],
                  "properties": {"region": {"enum": ["us", "eu", "uk", "ap", "cn", "global",
                                                     None]}}}
VERIFY_BODY = {"type": "object", "properties": {
    name: {"type": "string", "contentEncoding": "base64"}
    for name in ("statement", "signature", "artifact", "evidence")}}
LOGIN_BODY = {"type": "object", "additionalProperties": False, "required": ["email", "password"],
              "properties": {"email": _STR, "password": _STR}}
_PAGE = ("limit", "cursor")


def routes() -> list[AdminRoute]:
    async def openapi(request: web.Request, call: Any) -> web.StreamResponse:
        return json_response(document(ROUTES))

    return [
        AdminRoute("POST", "/api/auth/login", account.login, "public", "Log in",
                   body=LOGIN_BODY, tags=("session",)),
        AdminRoute("POST", "/api/auth/logout", account.logout, "session", "Log out",
                   status=204, tags=("session",)),
        AdminRoute("GET", "/api/auth/me", account.me, "session", "The caller and workspaces",
                   tags=("session",)),
        AdminRoute("GET", "/api/keys", keys.list_keys, "member", "List relay keys",
                   query=_PAGE, tags=("keys",)),
        AdminRoute("POST", "/api/keys", keys.create_key, "admin",
                   "Create a relay key (the secret is shown once)", body=KEY_BODY,
                   status=201, tags=("keys",)),
        AdminRoute("GET", "/api/keys/{id}", keys.get_key, "member", "A relay key",
                   load=keys.load_key, tags=("keys",)),
        AdminRoute("PATCH", "/api/keys/{id}", keys.update_key, "admin",
                   "Rename a key, set its quota or guardrail override", load=keys.load_key,
                   body=KEY_BODY, tags=("keys",)),
        AdminRoute("DELETE", "/api/keys/{id}", keys.revoke_key, "admin", "Revoke a key",
                   load=keys.load_key, status=204, tags=("keys",)),
        AdminRoute("GET", "/api/guardrails/matches", feeds.matches, "member",
                   "The guardrail Matches feed", query=(*feeds.MATCHES_FILTERS,
                                                        *feeds.TIME_FILTERS, *_PAGE),
                   tags=("guardrails",)),
        AdminRoute("GET", "/api/guardrails", controls.list_guardrails, "member",
                   "List guardrails", query=_PAGE, tags=("guardrails",)),
        AdminRoute("POST", "/api/guardrails", controls.create_guardrail, "admin",
                   "Create a guardrail", body=GUARDRAIL_BODY, status=201,
                   tags=("guardrails",)),
        AdminRoute("GET", "/api/guardrails/{id}", controls.get_guardrail, "member",
                   "A guardrail", load=controls.load_guardrail, tags=("guardrails",)),
        AdminRoute("PATCH", "/api/guardrails/{id}", controls.update_guardrail, "admin",
                   "Change a guardrail's name, mode, rules or default",
                   load=controls.load_guardrail, body=GUARDRAIL_BODY, tags=("guardrails",)),
        AdminRoute("GET", "/api/firewall/events", feeds.events, "member",
                   "The firewall Events feed", query=(*feeds.EVENTS_FILTERS,
                                                      *feeds.TIME_FILTERS, *_PAGE),
                   tags=("firewall",)),
        AdminRoute("GET", "/api/firewall/policies", controls.list_policies, "member",
                   "List firewall policies", query=_PAGE, tags=("firewall",)),
        AdminRoute("POST", "/api/firewall/policies", controls.create_policy, "admin",
                   "Create a firewall policy", body=POLICY_BODY, status=201,
                   tags=("firewall",)),
        AdminRoute("GET", "/api/firewall/policies/{id}", controls.get_policy, "member",
                   "A firewall policy", load=controls.load_policy, tags=("firewall",)),
        AdminRoute("PATCH", "/api/firewall/policies/{id}", controls.update_policy, "admin",
                   "Change a firewall policy's name, mode or document",
                   load=controls.load_policy, body=POLICY_BODY, tags=("firewall",)),
        AdminRoute("GET", "/api/audit", feeds.audit, "admin",
                   "The workspace audit trail (hash-chained)", query=_PAGE, tags=("audit",)),
        AdminRoute("GET", "/api/compliance/catalog", compliance.list_catalog, "member",
                   "Frameworks in the catalog and their state here", tags=("compliance",)),
        AdminRoute("POST", "/api/compliance/packs/{framework}/install", compliance.install,
                   "admin", "Install a framework pack (observe / shadow)", paid=True,
                   load=compliance.load_pack, status=201, tags=("compliance",)),
        AdminRoute("POST", "/api/compliance/packs/{framework}/golive", compliance.golive,
                   "admin", "Take an installed pack live (enforce)", paid=True,
                   load=compliance.load_pack, body=GOLIVE_BODY, tags=("compliance",)),
        AdminRoute("GET", "/api/compliance/readiness", compliance.readiness, "member",
                   "Clause by clause readiness of the installed packs",
                   tags=("compliance",)),
        AdminRoute("POST", "/api/compliance/reports", reports.generate, "admin",
                   "Generate a signed report (pdf, json or csv)", paid=True,
                   body=REPORT_BODY, status=201, tags=("reports",)),
        AdminRoute("GET", "/api/compliance/reports", reports.list_reports, "member",
                   "List reports", query=_PAGE, tags=("reports",)),
        AdminRoute("GET", "/api/compliance/reports/{id}/download", reports.download, "admin",
                   "The artifact, or with bundle=1 the verification bundle (zip)",
                   paid=True, load=reports.load_report, query=("bundle",),
                   tags=("reports",)),
        AdminRoute("POST", "/api/compliance/reports/{id}/share", reports.share, "admin",
                   "Create a read-only share link for an auditor", paid=True,
                   load=reports.load_report, status=201, tags=("reports",)),
        AdminRoute("DELETE", "/api/compliance/share/{id}", reports.revoke_share, "admin",
                   "Revoke a share link", paid=True, load=reports.load_share, status=204,
                   tags=("reports",)),
        AdminRoute("GET", "/api/compliance/residency", reports.get_residency, "member",
                   "The workspace's declared region", tags=("residency",)),
        AdminRoute("PUT", "/api/compliance/residency", reports.put_residency, "admin",
                   "Declare the workspace's region (null to unset)", paid=True,
                   body=RESIDENCY_BODY, tags=("residency",)),
        AdminRoute("GET", "/api/public/compliance/share/{token}", public.shared_report,
                   "public", "A shared report (HTML, JSON, or download=1 for the bundle)",
                   query=("download",), tags=("public",)),
        AdminRoute("GET", "/api/public/compliance/pubkey", public.pubkey, "public",
                   "The report-signing public key (PEM; format=jwks for every key)",
                   query=("kid", "format"), tags=("public",)),
        AdminRoute("POST", "/api/public/compliance/verify", public.verify, "public",
                   "Verify a bundle (application/zip) or its parts (JSON, base64)",
                   body=VERIFY_BODY, tags=("public",)),
        AdminRoute("GET", OPENAPI_PATH, openapi, "public", "This document",
                   tags=("meta",)),
    ]


ROUTES = routes()


@web.middleware
async def errors_as_json(request: web.Request, handler: web_Handler) -> web.StreamResponse:
    """Every /api answer is JSON, failures included, in the relay's one error shape."""
    try:
        return await handler(request)
    except RelayError as exc:
        return json_response(exc.body(), status=exc.status)
    except web.HTTPMethodNotAllowed as exc:
        error: RelayError = MethodNotAllowed(
            f"{request.method} is not allowed on {request.path}; use "
            + ", ".join(sorted(exc.allowed_methods)))
        return json_response(error.body(), status=error.status)
    except web.HTTPNotFound:
        error = NotFound(f"{request.method} {request.path} is not an admin route",
                         code="route_not_found")
        return json_response(error.body(), status=error.status)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("admin request %s %s failed", request.method, request.path)
        error = InternalError("the admin API failed; see the server log")
        return json_response(error.body(), status=error.status)


def add_api(app: web.Application, store: Store, sessions: Sessions, ttl_seconds: float,
            detector_ids: Collection[str], console_origins: tuple[str, ...],
            keyring: KeyRing, upstream_url: str) -> None:
    app.middlewares.append(errors_as_json)
    app[reports.KEYRING] = keyring
    app[reports.PUBLISHED] = [False]
    app[reports.UPSTREAM_URL] = upstream_url
    app[account.SESSIONS] = sessions
    app[account.SESSION_TTL] = ttl_seconds
    app[controls.DETECTOR_IDS] = detector_ids
    add_admin_routes(app, ROUTES, store, sessions, console_origins)
