"""A console client on real loopback HTTP: users with roles in workspaces with plans."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest

from relay.accounts import create_user
from relay.store.base import Plan, Role
from tests.conftest import Relay, RelayFactory, Upstream

PASSWORD = "correct horse battery staple"


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"]["code"])
        return None


class Console:
    """Talks to the admin listener like the console (cookie) or a script (bearer)."""

    def __init__(self, relay: Relay, session: aiohttp.ClientSession) -> None:
        self.relay = relay
        self.http = session

    async def call(self, method: str, path: str, *, token: str | None = None,
                   json: Any = None, headers: dict[str, str] | None = None,
                   cookies: dict[str, str] | None = None, raw: bytes | None = None
                   ) -> Answer:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (orjson.dumps(json) if json is not None else None)
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        async with self.http.request(method, self.relay.admin_url + path, data=data,
                                     headers=sent, cookies=cookies) as response:
            text = await response.read()
            body = orjson.loads(text) if text and response.content_type == \
                "application/json" else text
            return Answer(response.status, body, dict(response.headers))

    async def login(self, email: str, password: str = PASSWORD) -> str:
        answer = await self.call("POST", "/api/auth/login",
                                 json={"email": email, "password": password})
        assert answer.status == 200, answer.body
        return str(answer.body["token"])

    async def admin_token(self) -> str:
        return await self.login(self.relay.boot.admin_email, self.relay.boot.admin_password)

    async def user(self, email: str, role: Role, workspace_id: str | None = None) -> str:
        """A new user with this role in the workspace (default: the bootstrap one)."""
        await create_user(self.relay.services.store, email,
                          workspace_id or self.relay.boot.workspace.id, role, PASSWORD)
        return await self.login(email)

    async def workspace(self, name: str, plan: Plan) -> str:
        return (await self.relay.services.store.create_workspace(name, plan)).id


@pytest.fixture
async def console(make_relay: RelayFactory, upstream: Upstream) -> AsyncIterator[Console]:
    relay = await make_relay(upstream)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield Console(relay, session)
