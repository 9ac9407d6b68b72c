"""`/api/auth/*`: log in, log out, and who am I."""

from __future__ import annotations

from aiohttp import web

from relay.admin.auth import COOKIE, Sessions, set_session_cookie
from relay.admin.authz import Call, store_of
from relay.admin.http import field, json_response, read_object

SESSIONS: web.AppKey[Sessions] = web.AppKey("admin_account_sessions")
SESSION_TTL: web.AppKey[float] = web.AppKey("admin_session_ttl")


async def login(request: web.Request, call: Call) -> web.StreamResponse:
    body = await read_object(request, ("email", "password"))
    email = field(body, "email", str, required=True)
    password = field(body, "password", str, required=True)
    result = await request.app[SESSIONS].login(email, password, request.remote or "unknown")
    workspaces = await store_of(request).memberships(result.user.id)
    response = json_response({
        "token": result.token, "expires_at": result.session.expires_at,
        "user": {"id": result.user.id, "email": result.user.email},
        "workspaces": [{"id": ws, "role": role} for ws, role in workspaces],
    })
    set_session_cookie(response, request, result, request.app[SESSION_TTL])
    return response


async def logout(request: web.Request, call: Call) -> web.StreamResponse:
    assert call.caller is not None
    await request.app[SESSIONS].logout(call.caller.session)
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/api")
    return response


async def me(request: web.Request, call: Call) -> web.StreamResponse:
    assert call.caller is not None
    store = store_of(request)
    workspaces = []
    for workspace_id, role in await store.memberships(call.caller.user.id):
        workspace = await store.get_workspace(workspace_id)
        if workspace is not None:
            workspaces.append({"id": workspace.id, "name": workspace.name,
                               "plan": workspace.plan, "role": role})
    user = call.caller.user
    return json_response({"user": {"id": user.id, "email": user.email},
                          "session": {"id": call.caller.session.id,
                                      "expires_at": call.caller.session.expires_at},
                          "workspaces": workspaces})
