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

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from relay.store.postgres import PostgresStore, split_url
from relay.store.sqlite import SQLiteStore
from tests.pgtools import postgres_schema_url

__all__ = ["postgres_schema_url"]  # a fixture, shared with tests/e2e

AnyStore = SQLiteStore | PostgresStore
BACKENDS = ["sqlite", "postgres"]
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
