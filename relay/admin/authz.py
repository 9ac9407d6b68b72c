"""Who may call which admin route: one table entry per route, one middleware for all.

Each `AdminRoute` names its minimum access (`public`, `session`: any logged-in user,
`member`, `admin`), whether the workspace needs the paid plan, and how to find the
object its path names. The middleware applies them in the pinned order (API.md):

    no or bad session → 401 · CSRF → 403 csrf_failed · workspace or object the caller is
    not a member of → 404 · role → 403 admin_required · plan → 402 paid_plan_required ·
    then the handler (object state → 404 / 409)

so a handler never runs for a caller the table does not admit, and a route without an
entry cannot be registered at all (`add_admin_routes` is the only way in).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from aiohttp.typedefs import Handler as web_Handler

from relay.admin.auth import Authenticated, Sessions, check_csrf
from relay.errors import InvalidRequest, NotFound, PaymentRequired, PermissionDenied
from relay.store.base import Role, Store, Workspace

Access = Literal["public", "session", "member", "admin"]
WORKSPACE_HEADER = "X-Orca-Workspace"
_RANK: dict[str, int] = {"member": 1, "admin": 2}


@dataclass
class Call:
    """What the middleware established about a request, for its handler."""

    caller: Authenticated | None = None
    workspace: Workspace | None = None
    role: Role | None = None
    object: Any = None

    @property
    def actor(self) -> str:
        return f"user:{self.caller.user.id}" if self.caller else "anonymous"

    @property
    def workspace_id(self) -> str:
        assert self.workspace is not None
        return self.workspace.id


Handler = Callable[[web.Request, Call], Awaitable[web.StreamResponse]]
# Finds the object the path names within the workspace; None → 404.
Loader = Callable[[Store, str, dict[str, str]], Awaitable[Any]]


@dataclass(frozen=True)
class AdminRoute:
    method: str
    path: str
    handler: Handler
    access: Access
    summary: str
    paid: bool = False
    load: Loader | None = None
    body: dict[str, Any] | None = None  # JSON schema of the request body (OpenAPI)
    query: tuple[str, ...] = ()  # query parameters (OpenAPI)
    status: int = 200  # the success status
    tags: tuple[str, ...] = field(default_factory=tuple)


_TABLE = web.AppKey("admin_route_table", dict)
_SESSIONS = web.AppKey("admin_sessions", Sessions)
_STORE: web.AppKey[Store] = web.AppKey("admin_store")
_ORIGINS = web.AppKey("admin_console_origins", tuple)


def add_admin_routes(app: web.Application, routes: Sequence[AdminRoute], store: Store,
                     sessions: Sessions, console_origins: tuple[str, ...]) -> None:
    table: dict[tuple[str, str], AdminRoute] = {}
    for route in routes:
        resource = app.router.add_resource(route.path)
        resource.add_route(route.method, _unwrapped)
        table[(route.method, resource.canonical)] = route
    app[_TABLE] = table
    app[_SESSIONS] = sessions
    app[_STORE] = store
    app[_ORIGINS] = console_origins
    app.middlewares.append(authorize)


def store_of(request: web.Request) -> Store:
    return request.app[_STORE]


async def _unwrapped(request: web.Request) -> web.StreamResponse:
    raise AssertionError("admin routes run through the authorize middleware")


@web.middleware
async def authorize(request: web.Request, handler: web_Handler) -> web.StreamResponse:
    resource = request.match_info.route.resource
    table: dict[tuple[str, str], AdminRoute] = request.app[_TABLE]
    route = table.get((request.method, resource.canonical)) if resource is not None else None
    if route is None:
        return await handler(request)  # 404/405 and the non-/api routes
    call = Call()
    if route.access != "public":
        call.caller = await request.app[_SESSIONS].authenticate(request)
        check_csrf(request, call.caller.via_cookie, request.app[_ORIGINS])
    if route.access in ("member", "admin"):
        await _enter_workspace(request, call, route)
    return await route.handler(request, call)


async def _enter_workspace(request: web.Request, call: Call, route: AdminRoute) -> None:
    store = store_of(request)
    assert call.caller is not None
    memberships = dict(await store.memberships(call.caller.user.id))
    wanted = request.headers.get(WORKSPACE_HEADER)
    if wanted is None:
        if len(memberships) > 1:
            raise InvalidRequest(
                f"you belong to several workspaces; name one with the {WORKSPACE_HEADER} "
                "header", param=WORKSPACE_HEADER, code="workspace_required")
        wanted = next(iter(memberships), "")
    role = memberships.get(wanted)
    workspace = await store.get_workspace(wanted) if role is not None else None
    if workspace is None or role is None:
        raise NotFound("no such workspace among yours", code="workspace_not_found")
    call.workspace, call.role = workspace, role
    if route.load is not None:
        call.object = await route.load(store, workspace.id, dict(request.match_info))
        if call.object is None:
            raise NotFound(f"{request.path} does not exist in this workspace")
    if _RANK[role] < _RANK[route.access]:
        raise PermissionDenied(f"{route.method} {route.path} needs the admin role",
                               code="admin_required")
    if route.paid and workspace.plan != "paid":
        raise PaymentRequired(f"{route.method} {route.path} needs the paid plan")
