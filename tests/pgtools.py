"""PostgreSQL for tests: the server at ORCA_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test), a fresh schema per test. Where no server is
reachable the tests that need one skip with the reason, unless
ORCA_TEST_POSTGRES_REQUIRED=1 (CI), where they fail."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from relay.store.postgres import split_url

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    return os.environ.get("ORCA_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


_reachable: dict[str, str | None] = {}  # url -> None if reachable, else why not


def _probe(url: str) -> str | None:
    async def connect() -> None:
        conn = await asyncpg.connect(split_url(url)[0], timeout=5)
        await conn.close()

    try:
        asyncio.run(connect())
    except Exception as exc:
        return f"no PostgreSQL server reachable at {url} (ORCA_TEST_POSTGRES_URL): {exc!r}"
    return None


def require_postgres() -> str:
    """The server's URL; skips the test (fails it with ORCA_TEST_POSTGRES_REQUIRED=1) if
    no server answers there."""
    url = postgres_url()
    if url not in _reachable:
        _reachable[url] = _probe(url)
    reason = _reachable[url]
    if reason is not None:
        if os.environ.get("ORCA_TEST_POSTGRES_REQUIRED") == "1":
            pytest.fail(f"{reason}; ORCA_TEST_POSTGRES_REQUIRED=1", pytrace=False)
        pytest.skip(reason)
    return url


def with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&search_path={schema}" if parts.query else f"search_path={schema}"
    return urlunsplit(parts._replace(query=query))


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(split_url(url)[0], timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A URL whose connections see only a new, empty schema (dropped afterwards)."""
    url = require_postgres()
    schema = f"orca_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(url, f"CREATE SCHEMA {schema}"))
    try:
        yield with_search_path(url, schema)
    finally:
        asyncio.run(_admin(url, f"DROP SCHEMA {schema} CASCADE"))


