"""Factory fixtures on real loopback HTTP: a mock upstream, a relay (both listeners, a
real SQLite file), and the official openai SDK pointed at the relay.

Each factory remembers what it started and closes it in reverse when the test ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import openai
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from relay.accounts import BootstrapResult
from relay.config import Settings, load_settings
from relay.proxy.access import new_relay_key
from relay.server import Services, build_admin_app, build_relay_app, open_services, prepare_state
from relay.store.base import (
    FirewallPolicyRecord,
    GuardrailRecord,
    QuotaPeriod,
    new_id,
    rfc3339_now,
)
from relay.store.sqlite import SQLiteStore
from relay.testing import MockConfig, MockUpstream

PROVIDER_KEY = "sk-provider-test-0123456789"


@dataclass
class Upstream:
    mock: MockUpstream
    server: TestServer

    @property
    def url(self) -> str:
        return str(self.server.make_url("/v1"))


@dataclass
class Relay:
    services: Services
    relay_server: TestServer
    admin_server: TestServer
    boot: BootstrapResult
    upstream: Upstream | None

    @property
    def base_url(self) -> str:
        return str(self.relay_server.make_url("/v1"))

    @property
    def admin_url(self) -> str:
        return str(self.admin_server.make_url("")).rstrip("/")

    @property
    def key(self) -> str:
        return self.boot.key_secret

    @property
    def settings(self) -> Settings:
        return self.services.settings

    async def create_key(
        self, quota_tokens: int | None = None, quota_period: QuotaPeriod | None = None
    ) -> tuple[str, str]:
        """A new key in the default workspace, visible to the relay at once: (id, secret)."""
        record, secret = new_relay_key(
            self.boot.workspace.id, "test", quota_tokens, quota_period
        )
        await self.services.store.create_key(record)
        await self.services.access.refresh()
        return record.id, secret

    async def add_guardrail(
        self, mode: str, rules: list[dict[str, Any]], is_default: bool = True
    ) -> str:
        """A guardrail in the default workspace, loaded by the relay at once; its id."""
        now = rfc3339_now()
        record = GuardrailRecord(new_id("gr"), self.boot.workspace.id, "test", mode, rules,
                                 is_default, "user", now, now)
        await self.services.store.create_guardrail(record)
        await self.services.access.refresh()
        return record.id

    async def add_firewall_policy(self, mode: str, document: dict[str, Any]) -> str:
        """A firewall policy in the default workspace, loaded by the relay at once."""
        now = rfc3339_now()
        record = FirewallPolicyRecord(new_id("fw"), self.boot.workspace.id, "test", mode,
                                      document, "user", now, now)
        await self.services.store.create_firewall_policy(record)
        await self.services.access.refresh()
        return record.id

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}


class UpstreamFactory(Protocol):
    def __call__(self, config: MockConfig | None = None) -> Awaitable[Upstream]: ...


class RelayFactory(Protocol):
    def __call__(
        self, upstream: Upstream | None = None, **settings: Any
    ) -> Awaitable[Relay]: ...


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """An open SQLite store on a real file in the test's directory."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'orca.db'}")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def make_upstream(aiohttp_server: AiohttpServer) -> UpstreamFactory:
    async def go(config: MockConfig | None = None) -> Upstream:
        mock = MockUpstream(config=config or MockConfig())
        server = await aiohttp_server(mock.app())
        return Upstream(mock, server)

    return go


@pytest.fixture
async def upstream(make_upstream: UpstreamFactory) -> Upstream:
    return await make_upstream()


@pytest.fixture
async def make_relay(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> AsyncIterator[RelayFactory]:
    stack = contextlib.AsyncExitStack()
    count = 0

    async def go(upstream: Upstream | None = None, **overrides: Any) -> Relay:
        nonlocal count
        count += 1
        values: dict[str, Any] = {
            "data_dir": str(tmp_path / f"relay{count}"),
            "upstream_url": upstream.url if upstream else "http://127.0.0.1:9/v1",
            "upstream_api_key": PROVIDER_KEY,
            "upstream_timeout_seconds": 10.0,
            "shutdown_grace_seconds": 2.0,
            "state_refresh_seconds": 0.2,
            "uvloop": False,
        }
        values.update(overrides)
        settings = load_settings(environ={}, overrides=values)
        boot = await prepare_state(settings)
        assert boot is not None
        services = await stack.enter_async_context(open_services(settings))
        relay_server = await aiohttp_server(build_relay_app(services))
        admin_server = await aiohttp_server(build_admin_app(services))
        return Relay(services, relay_server, admin_server, boot, upstream)

    yield go
    await stack.aclose()


@pytest.fixture
async def relay(make_relay: RelayFactory, upstream: Upstream) -> Relay:
    return await make_relay(upstream)


@pytest.fixture
async def async_openai(relay: Relay) -> AsyncIterator[Callable[..., openai.AsyncOpenAI]]:
    clients: list[openai.AsyncOpenAI] = []

    def go(key: str | None = None, **kwargs: Any) -> openai.AsyncOpenAI:
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 20)
        client = openai.AsyncOpenAI(base_url=relay.base_url, api_key=key or relay.key, **kwargs)
        clients.append(client)
        return client

    yield go
    for client in clients:
        await client.close()


@pytest.fixture
def sync_openai(relay: Relay) -> Iterator[Callable[..., openai.OpenAI]]:
    """The blocking client: call it through asyncio.to_thread, the relay shares the loop."""
    clients: list[openai.OpenAI] = []

    def go(key: str | None = None, **kwargs: Any) -> openai.OpenAI:
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 20)
        client = openai.OpenAI(base_url=relay.base_url, api_key=key or relay.key, **kwargs)
        clients.append(client)
        return client

    yield go
    for client in clients:
        client.close()
