"""The store suite runs against both backends: `store` (an open store) and `store_url`
(a fresh database URL, for tests that open several instances) are parametrized with ids
`sqlite` and `postgres`.

PostgreSQL: the server at ORCA_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test). Each test gets its own schema (passed as the
`search_path` server setting), dropped afterwards, so tests never see each other's rows.
Where no server is reachable the postgres cases skip with the reason, unless
ORCA_TEST_POSTGRES_REQUIRED=1 (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from relay.store.postgres import PostgresStore, split_url
from relay.store.sqlite import SQLiteStore

AnyStore = SQLiteStore | PostgresStore
BACKENDS = ["sqlite", "postgres"]
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


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'orca.db'}"
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


@pytest.fixture
async def postgres_store(postgres_schema_url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(postgres_schema_url)
    await store.open()
    yield store
    await store.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> AnyStore:
    """An open store of each backend, on a fresh database."""
    found: AnyStore = request.getfixturevalue(f"{request.param}_store")
    return found


async def raw_rows(store: AnyStore, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows read past the store (sqlite3 on its file, asyncpg in its schema); `sql` uses
    `?` placeholders, turned into $n for PostgreSQL."""
    if isinstance(store, SQLiteStore):
        conn = sqlite3.connect(store.path)
        try:
            return list(conn.execute(sql, args).fetchall())
        finally:
            conn.close()
    return [tuple(r) for r in await raw_execute(store.dsn, sql, *args, fetch=True)]


async def raw_execute(dsn: str, sql: str, *args: Any, fetch: bool = False) -> list[Any]:
    """One statement on a connection of its own (PostgreSQL), `?` placeholders."""
    parts = sql.split("?")
    numbered = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))
    conn = await asyncpg.connect(split_url(dsn)[0], timeout=10)
    try:
        if fetch:
            return list(await conn.fetch(numbered, *args))
        await conn.execute(numbered, *args)
        return []
    finally:
        await conn.close()
