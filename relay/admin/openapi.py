"""`/api/openapi.json`, written from the route table itself, so it cannot drift from
the routes that exist (tests compare it with the application's router too)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from relay import __version__

if TYPE_CHECKING:
    from relay.admin.authz import AdminRoute

OPENAPI_PATH = "/api/openapi.json"
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "param", "code"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": "string"}}}}}
_ACCESS_TEXT = {
    "public": "No session needed.",
    "session": "Any logged-in user.",
    "member": "Members and admins of the workspace.",
    "admin": "Admins of the workspace.",
}


def document(routes: Sequence[AdminRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "orca-relay admin API", "version": __version__},
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "orca_session"},
                "bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": paths,
    }


def _operation(route: AdminRoute) -> dict[str, Any]:
    access = _ACCESS_TEXT[route.access] + (" Paid plan only." if route.paid else "")
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", route.path)]
    parameters += [{"name": name, "in": "query", "required": False,
                    "schema": {"type": "string"}} for name in route.query]
    if route.access in ("member", "admin"):
        parameters.append({"name": "X-Orca-Workspace", "in": "header", "required": False,
                           "schema": {"type": "string"},
                           "description": "the workspace to act on, for a user in several"})
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    operation: dict[str, Any] = {
        "summary": route.summary, "description": access, "tags": list(route.tags),
        "operationId": f"{route.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', route.path)}",
        "parameters": parameters,
        "responses": {str(route.status): {"description": "success"},
                      "default": {"description": "an error", **error}},
    }
    if route.access != "public":
        operation["security"] = [{"session": []}, {"bearer": []}]
    if route.body is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": route.body}}}
    return operation
